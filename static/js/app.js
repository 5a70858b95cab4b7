// Behaviour the templates ask for with data- attributes, so that no page needs inline JavaScript (the
// Content-Security-Policy allows scripts from static files only). Delegated from the document, so it also works
// for fragments htmx swaps in.
(function () {
  // <form data-confirm="…"> or <button data-confirm="…">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : event.target.parentElement;
    if (!target) return;
    var confirmButton = target.closest("button[data-confirm], input[data-confirm]");
    if (confirmButton && !window.confirm(confirmButton.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    var input = target.closest("input[data-select-on-click]");
    if (input) input.select();
    // <button data-copy> copies the value of the input just before it.
    var copy = target.closest("button[data-copy]");
    if (copy) {
      var field = copy.previousElementSibling;
      if (!field) return;
      field.select();
      var done = function () { copy.textContent = "Copied"; };
      if (navigator.clipboard) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); });
      } else {
        document.execCommand("copy");
        done();
      }
    }
  });
  // <input data-sandbox-prefix="sbx_seg_">: a sandbox write key picks the sandbox region of its form (the server
  // does the same, this only shows it before saving).
  document.addEventListener("input", function (event) {
    var input = event.target;
    var prefix = input.getAttribute && input.getAttribute("data-sandbox-prefix");
    if (!prefix || !input.form || input.value.indexOf(prefix) !== 0) return;
    var region = input.form.querySelector("select[name=region]");
    if (region && (region.value === "us" || region.value === "eu") && region.querySelector("option[value=sandbox]")) {
      region.value = "sandbox";
      region.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
  // <input data-catalog-search>: the catalog's cards filtered as you type (the form's GET ?q= does the same
  // without JavaScript).
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input.hasAttribute || !input.hasAttribute("data-catalog-search")) return;
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    document.querySelectorAll(".catalog-card[data-search]").forEach(function (card) {
      var text = card.getAttribute("data-search");
      var match = words.every(function (word) { return text.indexOf(word) !== -1; });
      card.hidden = !match;
      if (match) shown += 1;
      var q = input.value.trim();
      card.setAttribute("href", "?" + (q ? "q=" + encodeURIComponent(q) + "&" : "") + "selected=" +
        encodeURIComponent(card.getAttribute("data-slug")) + "#selected");
    });
    var empty = document.getElementById("catalog-empty");
    if (empty) {
      empty.hidden = shown > 0;
      var echo = empty.querySelector("[data-catalog-query]");
      if (echo) echo.textContent = input.value;
    }
  });
  // <select data-autosubmit>: submit its form on change (the workspace switcher).
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-autosubmit]") && select.form) select.form.submit();
  });

  // <form data-kind-fields='{"value": "field id", …}'>: show only the fields the chosen kind uses (all stay visible
  // without JavaScript; the server ignores the others).
  function kindFields(root) {
    (root || document).querySelectorAll("form[data-kind-fields]").forEach(function (form) {
      var kind = form.querySelector("[name=kind]");
      if (!kind || form.hasAttribute("data-kind-bound")) return;
      form.setAttribute("data-kind-bound", "");
      var fields = JSON.parse(form.getAttribute("data-kind-fields"));
      var sync = function () {
        Object.keys(fields).forEach(function (value) {
          var element = document.getElementById(fields[value]);
          var box = element && element.closest(".field");
          if (box) box.hidden = kind.value !== value;
        });
      };
      kind.addEventListener("change", sync);
      sync();
    });
  }
  // <span data-width="42">: a bar 42% wide (a style attribute would need 'unsafe-inline' styles).
  function widths(root) {
    (root || document).querySelectorAll("[data-width]").forEach(function (bar) {
      bar.style.width = Math.max(0, Math.min(100, parseFloat(bar.getAttribute("data-width")) || 0)) + "%";
    });
  }
  function setUp(root) {
    kindFields(root);
    widths(root);
  }
  // The navigation menu (<details class="nav-menu">) is always shown on wide screens by app.css through
  // ::details-content; a browser without it gets the menu opened here on wide screens (a phone keeps it closed).
  function navMenu() {
    var menu = document.querySelector("details.nav-menu");
    if (!menu) return;
    // The summary is marked up as a button; say whether the menu is open as a button would.
    var toggle = menu.querySelector("summary");
    var expanded = function () { toggle.setAttribute("aria-expanded", menu.open ? "true" : "false"); };
    expanded();
    menu.addEventListener("toggle", expanded);
    if (window.CSS && CSS.supports && CSS.supports("selector(::details-content)")) return;
    var wide = window.matchMedia("(min-width: 761px)");
    var sync = function () { menu.open = wide.matches; };
    sync();
    wide.addEventListener("change", sync);
  }
  document.addEventListener("DOMContentLoaded", navMenu);
  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:afterSettle", function () { setUp(document); });
})();
