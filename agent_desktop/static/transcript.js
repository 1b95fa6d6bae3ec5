// A call's transcript beside its player: the player starts at the searched word (data-start), a click on a word
// plays from there, and the line being heard is highlighted as it plays.
(function () {
  "use strict";
  const player = document.getElementById("transcript-player");
  const list = document.getElementById("transcript-lines");
  if (!player || !list) return;
  const lines = Array.from(list.querySelectorAll("li.line"));
  const start = Number(player.dataset.start || 0);
  const hit = list.querySelector("li.hit");
  if (hit) hit.scrollIntoView({ block: "center" });
  if (start > 0) {
    // the player loads nothing before play (every listen is audited): seek once its length is known
    player.addEventListener("loadedmetadata", function () {
      if (player.currentTime < start) player.currentTime = start;
    }, { once: true });
  }
  list.addEventListener("click", function (event) {
    const word = event.target.closest(".word");
    if (!word) return;
    player.currentTime = Number(word.dataset.start);
    player.play();
  });
  player.addEventListener("timeupdate", function () {
    const now = player.currentTime;
    for (const line of lines) {
      line.classList.toggle("playing", Number(line.dataset.start) <= now && now < Number(line.dataset.end) + 0.3);
    }
  });
})();
