// Entry point: tabs (the URL hash picks one), the API-key dialog, and the three sections.

import { apiKey, onKeyNeeded, setApiKey } from "./api.js";
import { initChat } from "./chat.js";
import { initDashboard } from "./dashboard.js";
import { initPredict } from "./predict.js";

const TABS = ["chat", "predict", "dashboard"];
const $ = (id) => document.getElementById(id);

export function banner(message) {
  const el = $("banner");
  el.textContent = message ?? "";
  el.hidden = !message;
}

function askForKey(error) {
  const dialog = $("key-dialog");
  const input = $("key-input");
  $("key-error").hidden = !error;
  $("key-error").textContent = error ? `That key was refused: ${error}` : "";
  input.value = "";
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      const key = dialog.returnValue === "save" ? input.value.trim() : "";
      setApiKey(key || null);
      $("key-button").hidden = false; // this server wants a key: keep a way to change it
      resolve(key || null);
    };
    dialog.addEventListener("close", done);
    dialog.returnValue = "";
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

const sections = {};

function showTab() {
  const name = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "chat";
  for (const tab of TABS) {
    const selected = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    $(`tab-${tab}`).tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
  for (const [tab, section] of Object.entries(sections)) section.visible?.(tab === name);
}

function keyboardTabs(event) {
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
  const index = TABS.findIndex((t) => `tab-${t}` === event.target.id);
  if (index < 0 || !["ArrowLeft", "ArrowRight"].includes(event.key)) return;
  const next = TABS[(index + (event.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
  location.hash = next;
  $(`tab-${next}`).focus();
}

async function main() {
  onKeyNeeded(askForKey);
  $("key-button").hidden = !apiKey();
  // A new key reloads the page, so every section reads the server with it.
  $("key-button").addEventListener("click", () => askForKey(null).then((k) => k && location.reload()));
  document.querySelector(".tabs").addEventListener("keydown", keyboardTabs);
  window.addEventListener("hashchange", showTab);
  sections.chat = initChat({ banner });
  sections.predict = initPredict();
  sections.dashboard = initDashboard();
  showTab();
  document.body.dataset.ready = "true";
}

main();
