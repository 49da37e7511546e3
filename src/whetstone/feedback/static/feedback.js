// whetstone feedback studio: progress polling on the dashboard and streamed chat replies.
// Text from the server is only ever inserted with textContent, never as HTML.
"use strict";

function pollProgress(section) {
  const url = section.dataset.url;
  const tick = async () => {
    let rows;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      rows = await response.json();
    } catch (err) {
      return;
    }
    let pending = 0;
    for (const row of rows) {
      pending += row.pending;
      for (const tr of section.querySelectorAll("tr[data-model]")) {
        if (tr.dataset.model !== row.model) continue;
        tr.querySelector(".done").textContent = String(row.done);
        tr.querySelector(".pending").textContent = String(row.pending);
        tr.querySelector(".failed").textContent = String(row.failed);
        tr.querySelector(".error-cell").textContent = row.error || "";
      }
    }
    if (pending === 0) {
      window.location.reload();
    } else {
      window.setTimeout(tick, 1500);
    }
  };
  window.setTimeout(tick, 1500);
}

function parseEvents(buffer, onEvent) {
  // Server-sent events separated by blank lines; returns the unfinished tail.
  let index;
  while ((index = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, index);
    buffer = buffer.slice(index + 2);
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trim());
    }
    if (data.length) onEvent(name, JSON.parse(data.join("\n")));
  }
  return buffer;
}

function setupChat(chat) {
  const form = document.getElementById("chat-form");
  const errorBox = document.getElementById("chat-error");
  const input = document.getElementById("message");
  for (const button of document.querySelectorAll(".suggestion")) {
    button.addEventListener("click", () => {
      if (input) {
        input.value = button.dataset.prompt;
        input.focus();
      }
    });
  }
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (!message) return;
    const send = document.getElementById("send");
    send.disabled = true;
    errorBox.hidden = true;
    const user = document.createElement("div");
    user.className = "msg user";
    user.textContent = message;
    const reply = document.createElement("div");
    reply.className = "msg assistant streaming";
    reply.id = "streaming-reply";
    chat.append(user, reply);
    input.value = "";
    const fail = (text) => {
      errorBox.textContent = text;
      errorBox.hidden = false;
      send.disabled = false;
      reply.classList.remove("streaming");
    };
    let response;
    try {
      response = await fetch(chat.dataset.send, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": chat.dataset.csrf },
        body: JSON.stringify({ conversation: chat.dataset.conversation, message: message }),
      });
    } catch (err) {
      fail("The server cannot be reached.");
      return;
    }
    if (!response.ok) {
      let text = "The message was not accepted.";
      try {
        text = (await response.json()).error || text;
      } catch (err) {
        // keep the generic text
      }
      fail(text);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (name, data) => {
        if (name === "token") reply.textContent += data.text;
        else if (name === "done") finished = true;
        else if (name === "error") fail(data.message);
      });
    }
    reply.classList.remove("streaming");
    if (finished) window.location.reload();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const progress = document.getElementById("progress");
  if (progress && Number(progress.dataset.pending) > 0) pollProgress(progress);
  const chat = document.getElementById("chat");
  if (chat) setupChat(chat);
});
