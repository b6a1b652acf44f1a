// Progressive enhancement only: every control also works without script (plain GET forms).
// Submits a filter form as soon as one of its .autosubmit controls changes.
"use strict";
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLElement && target.classList.contains("autosubmit") && target.form) {
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
