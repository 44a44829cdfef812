// forkq dashboard: live updates without reloading. The page's <main> names its stream
// (data-stream); each message is the page's data as JSON, put into the elements that name
// a field of it:
//   data-text="a.b"        the element's text (textContent: data is never parsed as HTML)
//   data-attr="x:a;y:b"    attributes (href and action values are paths the server made)
//   data-show="a"          hidden unless the field is non-empty
//   data-list="a"          one copy of the <template> inside per item, each a data-scope
// An element belongs to the nearest data-scope above it; a list's items are scopes of
// their own, so lists nest (a worker's children inside each worker).
"use strict";

(function () {
  function field(data, path) {
    let value = data;
    for (const key of path.split(".")) {
      if (value === null || value === undefined) return "";
      value = value[key];
    }
    return value === null || value === undefined ? "" : value;
  }

  function fillList(el, items) {
    const template = el.querySelector(":scope > template");
    if (!template || !Array.isArray(items)) return;
    for (const old of Array.from(el.children)) {
      if (old.hasAttribute("data-scope")) old.remove();
    }
    for (const item of items) {
      const row = template.content.firstElementChild.cloneNode(true);
      fill(row, item);
      el.appendChild(row);
    }
  }

  function fill(scope, data) {
    const marked = scope.querySelectorAll("[data-text],[data-attr],[data-show],[data-list]");
    for (const el of [scope, ...marked]) {
      if (el !== scope && el.parentElement.closest("[data-scope]") !== scope) continue;
      if (el.dataset.text !== undefined) el.textContent = String(field(data, el.dataset.text));
      if (el.dataset.attr) {
        for (const pair of el.dataset.attr.split(";")) {
          const [name, path] = pair.split(":");
          if (!name || !path) continue;
          const value = String(field(data, path));
          if (value) el.setAttribute(name, value);
          else el.removeAttribute(name);
        }
      }
      if (el.dataset.show !== undefined) el.hidden = !field(data, el.dataset.show);
      if (el.dataset.list !== undefined && el !== scope) fillList(el, field(data, el.dataset.list));
    }
  }

  function connect(main) {
    const live = document.getElementById("live");
    const source = new EventSource(main.dataset.stream);
    source.onopen = function () { live.dataset.state = "on"; };
    source.onerror = function () { live.dataset.state = "off"; };
    source.onmessage = function (message) {
      fill(main, JSON.parse(message.data));
      main.dataset.updates = String(Number(main.dataset.updates || "0") + 1);
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    const main = document.getElementById("page");
    if (main && main.dataset.stream && window.EventSource) connect(main);
  });

  // what asks to confirm: what stops work, and what moves or deletes dead letters
  const CONFIRMED = new Set(["shutdown", "terminate", "requeue", "delete", "requeue all", "delete all"]);

  // rows are rebuilt by the stream: one listener for every form, now and later
  document.addEventListener("submit", function (event) {
    const button = event.target.querySelector("button[data-action]");
    const verb = button ? button.dataset.action : "";
    if (CONFIRMED.has(verb) && !window.confirm(verb + "?")) {
      event.preventDefault();
    }
  });
})();
