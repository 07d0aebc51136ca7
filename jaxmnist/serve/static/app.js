// jaxmnist digit demo: draw on the canvas (pointer events) or upload a photo; POST /predict.
// Plain JS, no dependencies, so the page works offline.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  // Stroke width in canvas pixels (the canvas is 280 px): about a tenth of a digit's height,
  // close to MNIST's 2-px strokes in a 20-px digit.
  const LINE = 18;
  // While drawing, predict at most every THROTTLE_MS; one request in flight at a time, the
  // latest drawing is sent when it returns (so a slow server never builds a queue).
  const THROTTLE_MS = 150;

  let drawing = false;
  let last = null;
  let inked = false;
  let timer = null;
  let busy = false;
  // Bumped whenever the input is replaced (clear, new upload); a response that comes back for an
  // older generation is not shown, so a slow answer can never overwrite a newer state.
  let generation = 0;
  let again = false;
  let source = null; // "canvas" | File | null
  let member = null; // null = the server's default

  // ---- bars --------------------------------------------------------------------------------
  const bars = [];
  for (let d = 0; d < 10; d++) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.setAttribute("role", "listitem");
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = String(d);
    const track = document.createElement("div");
    track.className = "bar-track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.p = "0";
    track.appendChild(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    row.append(label, track, value);
    $("bars").appendChild(row);
    bars.push({ row, bar, value });
  }

  function showProbabilities(probs, top) {
    probs.forEach((p, d) => {
      const b = bars[d];
      b.bar.style.width = `${(100 * p).toFixed(2)}%`;
      b.bar.dataset.p = String(p);
      b.value.textContent = p > 0 && p < 0.0005 ? "<0.1%" : `${(100 * p).toFixed(1)}%`;
      b.row.classList.toggle("top", d === top);
    });
  }

  function resetResult() {
    $("digit").textContent = "–";
    $("confidence").textContent = "";
    $("seen").removeAttribute("src");
    $("seen").classList.add("empty");
    bars.forEach((b) => {
      b.bar.style.width = "0";
      b.bar.dataset.p = "0";
      b.value.textContent = "";
      b.row.classList.remove("top");
    });
  }

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  // ---- canvas ------------------------------------------------------------------------------
  function resetCanvas() {
    ctx.fillStyle = "#fff"; // opaque white paper: what a photo of a digit looks like
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = LINE;
    ctx.strokeStyle = "#111";
    ctx.fillStyle = "#111";
    inked = false;
  }

  function pos(e) {
    const r = pad.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) * pad.width) / r.width,
      y: ((e.clientY - r.top) * pad.height) / r.height,
    };
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    if (source !== "canvas") resetCanvas(); // drawing replaces an uploaded photo's preview
    drawing = true;
    source = "canvas";
    last = pos(e);
    ctx.beginPath();
    ctx.arc(last.x, last.y, LINE / 2, 0, 2 * Math.PI);
    ctx.fill();
    inked = true;
    schedule();
  });

  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    e.preventDefault();
    const events = (e.getCoalescedEvents && e.getCoalescedEvents()) || [];
    for (const ev of events.length ? events : [e]) {
      const p = pos(ev);
      ctx.beginPath();
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
      last = p;
    }
    schedule();
  });

  function endStroke() {
    if (!drawing) return;
    drawing = false;
    predictNow();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);

  $("clear").addEventListener("click", () => {
    generation += 1; // an answer still in flight belongs to the cleared drawing: drop it
    clearTimeout(timer);
    timer = null;
    again = false;
    source = null;
    resetCanvas();
    resetResult();
    setStatus("");
  });

  // ---- upload ------------------------------------------------------------------------------
  async function useFile(file) {
    if (!file) return;
    generation += 1;
    source = file;
    resetCanvas();
    try {
      // Preview only; the server gets the original file. Formats the browser cannot decode
      // (e.g. HEIC) simply show no preview, and the server's answer explains.
      const bmp = await createImageBitmap(file);
      const s = Math.min(pad.width / bmp.width, pad.height / bmp.height);
      const w = bmp.width * s;
      const h = bmp.height * s;
      ctx.drawImage(bmp, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    } catch (err) {
      /* no preview */
    }
    predictNow();
  }

  $("file").addEventListener("change", (e) => {
    const f = e.target.files && e.target.files[0];
    useFile(f);
    e.target.value = ""; // choosing the same file again fires "change" again
  });

  const card = $("input-card");
  card.addEventListener("dragover", (e) => {
    e.preventDefault();
    card.classList.add("drop");
  });
  card.addEventListener("dragleave", () => card.classList.remove("drop"));
  card.addEventListener("drop", (e) => {
    e.preventDefault();
    card.classList.remove("drop");
    useFile(e.dataTransfer.files && e.dataTransfer.files[0]);
  });

  // ---- prediction --------------------------------------------------------------------------
  function schedule() {
    if (timer === null) timer = setTimeout(predictNow, THROTTLE_MS);
  }

  async function predictNow() {
    clearTimeout(timer);
    timer = null;
    if (busy) {
      again = true;
      return;
    }
    if (source === null || (source === "canvas" && !inked)) return;
    busy = true;
    const gen = generation;
    const query = member === null ? "" : `?member=${encodeURIComponent(member)}`;
    let req;
    if (source === "canvas") {
      req = {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image: pad.toDataURL("image/png") }),
      };
    } else {
      const form = new FormData();
      form.append("file", source, source.name || "upload");
      req = { method: "POST", body: form };
    }
    try {
      const r = await fetch(`/predict${query}`, req);
      const body = await r.json().catch(() => ({ detail: `HTTP ${r.status}` }));
      if (gen !== generation) {
        /* stale: the input changed while this request was in flight */
      } else if (!r.ok) {
        resetResult();
        $("digit").textContent = "?";
        setStatus(body.detail || `HTTP ${r.status}`, true);
      } else {
        show(body);
      }
    } catch (err) {
      setStatus(`cannot reach the server: ${err}`, true);
    } finally {
      busy = false;
      if (again) {
        again = false;
        predictNow();
      }
    }
  }

  function show(res) {
    const p = res.probabilities;
    $("digit").textContent = String(res.digit);
    $("confidence").textContent =
      `${(100 * p[res.digit]).toFixed(1)}% · member ${res.member} · ` +
      `${res.latency_ms.toFixed(1)} ms on the server`;
    $("seen").src = res.input_28x28;
    $("seen").classList.remove("empty");
    showProbabilities(p, res.digit);
    setStatus("");
  }

  // ---- members -----------------------------------------------------------------------------
  function pct(x) {
    return x === null || x === undefined ? "–" : `${(100 * x).toFixed(2)}%`;
  }

  async function loadMembers() {
    let info;
    try {
      const r = await fetch("/api/members");
      info = await r.json();
    } catch (err) {
      setStatus(`cannot load the model list: ${err}`, true);
      return;
    }
    member = info.default;
    const select = $("member");
    const tbody = document.querySelector("#members tbody");
    const usable = info.members.filter((m) => m.available);
    for (const m of info.members) {
      const tr = document.createElement("tr");
      tr.dataset.member = String(m.member);
      if (!m.available) tr.className = "unavailable";
      const cells = [String(m.member), m.summary, pct(m.val_acc), pct(m.test_acc),
        m.available ? m.status : `${m.status} (${m.reason})`];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
      if (m.available) {
        const opt = document.createElement("option");
        opt.value = String(m.member);
        opt.textContent = `#${m.member} · ${pct(m.test_acc)} · ${m.summary}` +
          (m.member === info.default ? " (default)" : "");
        select.appendChild(opt);
      }
    }
    select.value = String(info.default);
    $("default-rule").textContent = `Default member #${info.default}: ${info.default_rule}.`;
    $("chooser-row").hidden = usable.length < 2;
    select.addEventListener("change", () => {
      member = Number(select.value);
      markMember();
      predictNow();
    });
    markMember();

    function markMember() {
      for (const tr of tbody.querySelectorAll("tr")) {
        tr.classList.toggle("current", tr.dataset.member === String(member));
      }
      const m = info.members.find((x) => x.member === member);
      const where = (info.study ? `study ${info.study}` : info.run_dir) +
        (info.reduced ? " (reduced run)" : "");
      $("model-info").textContent =
        `${where} · member ${member}: ${m.summary} · test accuracy ${pct(m.test_acc)}`;
    }
  }

  resetCanvas();
  resetResult();
  loadMembers();
})();
