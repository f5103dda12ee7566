// The drift board, live: server-sent events from /events (EventSource: it reconnects by itself and sends
// the last event id, so the server resumes after it). A changed finding's row and the counts are fetched
// again as the server renders them, so a live row looks exactly like one rendered with the page.
"use strict";
(function () {
  const board = document.getElementById("board");
  if (!board || !window.EventSource) {
    return;
  }
  const status = document.getElementById("live-status");
  const table = document.getElementById("findings");
  const firstPage = board.dataset.offset === "0";
  const query = board.dataset.query ? "?" + board.dataset.query : "";
  let updates = Promise.resolve();  // one after the other: a later change of a row never lands first
  let summaryTimer = null;

  function say(text, live) {
    status.textContent = text;
    status.classList.toggle("on", live);
  }

  async function fragment(path) {
    const response = await fetch(path + query, {credentials: "same-origin", headers: {"Accept": "text/html"}});
    if (response.status === 401) {
      window.location.reload();  // the session ended: the page sends the person to sign in
      return null;
    }
    return response;
  }

  async function updateRow(change) {
    const response = await fragment("/board/findings/" + encodeURIComponent(change.fingerprint));
    if (response === null) {
      return;
    }
    const shown = document.getElementById("f-" + change.fingerprint);
    if (response.status === 200) {
      const html = await response.text();
      if (shown) {
        shown.outerHTML = html;
      } else if (firstPage) {
        table.tHead.insertAdjacentHTML("afterend", html);  // the newest first
        const none = document.getElementById("no-findings");
        if (none) {
          none.textContent = "New findings arrived: reload for the page count.";
        }
      }
      const row = document.getElementById("f-" + change.fingerprint);
      if (row) {
        row.classList.add("changed");
      }
    } else if (response.status === 204 && shown) {
      shown.remove();  // it no longer matches the filters (resolved, say)
    }
  }

  function refreshSummary() {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(async function () {
      const response = await fragment("/board/summary");
      if (response !== null && response.status === 200) {
        document.getElementById("summary").innerHTML = await response.text();
      }
    }, 250);
  }

  const source = new EventSource("/events?after=" + encodeURIComponent(board.dataset.after));
  source.addEventListener("open", function () {
    say("live: findings update as they change", true);
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      say("disconnected; reloading shortly", false);
      setTimeout(function () { window.location.reload(); }, 5000);
    } else {
      say("reconnecting…", false);
    }
  });
  source.addEventListener("finding", function (event) {
    const change = JSON.parse(event.data);
    updates = updates.then(function () { return updateRow(change); }).catch(function () {});
    refreshSummary();
  });
  source.addEventListener("health", function (event) {
    document.getElementById("health-strip").innerHTML = JSON.parse(event.data).html;
  });
  source.addEventListener("reset", function () {
    source.close();
    window.location.reload();  // changes were missed: start from a fresh page
  });
})();
