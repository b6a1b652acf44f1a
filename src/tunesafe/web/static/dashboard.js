// Progressive enhancement only: every control also works without script (plain GET forms).
// Submits a filter form as soon as one of its .autosubmit controls changes.
"use strict";
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLElement && target.classList.contains("autosubmit") && target.form) {
    target.form.requestSubmit();
  }
});
