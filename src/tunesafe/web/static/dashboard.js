// Progressive enhancement only: every control also works without script (plain GET forms).
// Submits a filter form as soon as one of its .autosubmit controls changes.
"use strict";

// A closed select changes (and fires `change`) on every arrow or letter key: submitting then would reload
// the page at the first option passed, before a keyboard user reaches the one wanted. Such changes wait
// for Enter (or the form's filter button); a pointer choice still applies at once.
const BROWSE_KEYS = new Set(["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);
let keyed = null;

function isAutosubmit(target) {
  return target instanceof HTMLElement && target.classList.contains("autosubmit") && target.form;
}

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLSelectElement) || !isAutosubmit(target)) {
    return;
  }
  if (event.key === "Enter") {
    event.preventDefault();
    keyed = null;
    target.form.requestSubmit();
  } else if (!event.altKey && (BROWSE_KEYS.has(event.key) || (event.key.length === 1 && event.key !== " "))) {
    keyed = target;
  }
});
document.addEventListener("pointerdown", () => {
  keyed = null;
});

document.addEventListener("change", (event) => {
  const target = event.target;
  if (target === keyed) {
    return;
  }
  if (isAutosubmit(target)) {
    target.form.requestSubmit();
  }
});

// The lineage graph's boxes open the evidence record they stand for.
document.addEventListener("click", (event) => {
  const target = event.target;
  const node = target instanceof Element ? target.closest("g.node[data-record-id]") : null;
  if (node) {
    window.location.assign("/evidence/" + encodeURIComponent(node.getAttribute("data-record-id")));
  }
});
