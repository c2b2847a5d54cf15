// The page of `tts serve`. It talks to the server only through the public API, as any client would:
// GET /health, GET/POST/DELETE /v1/voices, POST /v1/audio/speech (streamed WAV, sentence by sentence).
"use strict";

const $ = (id) => document.getElementById(id);
let health = null;
let recording = null;   // {recorder, chunks} while the microphone records
let recordedFile = null; // a File made from the last recording (WAV, so the server can read it)
let resultUrl = null;

function headers(extra) {
  const key = $("api-key").value.trim();
  return Object.assign(key ? { Authorization: "Bearer " + key } : {}, extra || {});
}

async function apiError(response) {
  // The API answers every refusal with {"error": {"message": ...}}; anything else is shown as its status.
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message + " (" + response.status + ")";
  } catch (e) { /* not JSON */ }
  return "the server answered " + response.status + " " + response.statusText;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function busy(text) {
  $("progress-row").hidden = !text;
  $("status").textContent = text || "";
  if (!text) $("progress").removeAttribute("value");
}

async function loadHealth() {
  const response = await fetch("/health");
  health = await response.json();
  $("server").textContent = "Model " + health.model + " · " + health.sample_rate / 1000 + " kHz";
  $("key-section").hidden = !health.auth;
  $("speed-label").hidden = !health.speed;
  $("guidance-label").hidden = !health.guidance;
  $("steps-label").hidden = !health.steps;
  $("text").maxLength = health.max_chars;
  $("transcript-need").textContent = health.needs_transcript
    ? "(needed by " + health.model + "; transcribed offline when left empty, which is often wrong)" : "(optional)";
  countChars();
}

async function loadVoices(select) {
  const response = await fetch("/v1/voices", { headers: headers() });
  if (!response.ok) { showError(await apiError(response)); return; }
  const voices = (await response.json()).data;
  const list = $("voice");
  const keep = select || list.value;
  list.innerHTML = "";
  for (const voice of voices) {
    const option = document.createElement("option");
    option.value = voice.id;
    option.textContent = voice.name + (voice.builtin ? " (built-in, " : " (") + voice.seconds + " s)";
    option.dataset.builtin = voice.builtin;
    list.appendChild(option);
  }
  if (voices.some((v) => v.id === keep)) list.value = keep;
  $("server").textContent = $("server").textContent.split(" · ").slice(0, 2).join(" · ") + " · " + voices.length +
    " voices";
  voiceChanged();
}

function voiceChanged() {
  const option = $("voice").selectedOptions[0];
  $("delete-voice").disabled = !option || option.dataset.builtin === "true";
}

function countChars() {
  const n = $("text").value.length;
  $("count").textContent = n + (health ? " / " + health.max_chars : "") + " characters";
}

async function uploadVoice() {
  showError("");
  const file = $("upload-file").files[0] || recordedFile;
  if (!file) { showError("Choose an audio file or record a clip first."); return; }
  const form = new FormData();
  form.append("file", file, file.name || "prompt.wav");
  form.append("transcript", $("upload-transcript").value);
  form.append("name", $("upload-name").value);
  $("upload-button").disabled = true;
  busy("Uploading the voice…");
  try {
    const response = await fetch("/v1/voices", { method: "POST", headers: headers(), body: form });
    if (!response.ok) { showError(await apiError(response)); return; }
    const voice = await response.json();
    await loadVoices(voice.id);
    $("add-voice").open = false;
    $("upload-file").value = "";
    recordedFile = null;
    $("recorded").hidden = true;
  } catch (e) {
    showError("Upload failed: " + e.message);
  } finally {
    $("upload-button").disabled = false;
    busy("");
  }
}

async function deleteVoice() {
  const id = $("voice").value;
  if (!id || !confirm("Delete the voice " + id + "?")) return;
  const response = await fetch("/v1/voices/" + encodeURIComponent(id), { method: "DELETE", headers: headers() });
  if (!response.ok) showError(await apiError(response)); else await loadVoices();
}

// Recording: the browser records in its own format (webm/ogg); it is decoded here and sent as 16-bit WAV.
async function toggleRecording() {
  if (recording) { recording.recorder.stop(); return; }
  showError("");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showError("The microphone is not available: " + e.message);
    return;
  }
  const recorder = new MediaRecorder(stream);
  recording = { recorder, chunks: [] };
  recorder.ondataavailable = (event) => recording.chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    const blob = new Blob(recording.chunks);
    recording = null;
    $("record").textContent = "Record";
    $("record").classList.remove("recording");
    try {
      const context = new AudioContext();
      const audio = await context.decodeAudioData(await blob.arrayBuffer());
      recordedFile = new File([wavFromSamples(audio.getChannelData(0), audio.sampleRate)], "recording.wav",
        { type: "audio/wav" });
      $("recorded").textContent = "Recorded " + audio.duration.toFixed(1) + " s; it is uploaded with Add voice.";
      $("recorded").hidden = false;
    } catch (e) {
      showError("The recording could not be decoded: " + e.message);
    }
  };
  recorder.start();
  $("record").textContent = "Stop";
  $("record").classList.add("recording");
}

function wavHeader(view, dataBytes, sampleRate) {
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + dataBytes, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true); view.setUint32(28, 2 * sampleRate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, dataBytes, true);
}

function wavFromSamples(samples, sampleRate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  wavHeader(view, 2 * samples.length, sampleRate);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, samples[i])) * 32767, true);
  }
  return buffer;
}

function decodingOptions() {
  // The decoding fields of the request, as the form has them; the server checks their ranges and says what is wrong.
  const number = (id) => Number($(id).value);
  const options = { greedy: $("greedy").checked, temperature: number("temperature"), top_k: number("top-k"),
    top_p: number("top-p") };
  if (health.guidance) options.guidance = number("guidance");
  if (health.steps) options.steps = number("steps");
  if ($("seed").value.trim() !== "") options.seed = number("seed");
  return options;
}

async function synthesize() {
  showError("");
  const text = $("text").value.trim();
  if (!text) { showError("Type some text first."); return; }
  const request = { model: health.model, input: text, voice: $("voice").value, response_format: "wav", stream: true };
  if (health.speed) request.speed = Number($("speed").value);
  Object.assign(request, decodingOptions());
  $("synthesize").disabled = true;
  const started = performance.now();
  busy("Waiting for the first sentence…");
  try {
    const response = await fetch("/v1/audio/speech", {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(request),
    });
    if (!response.ok) { showError(await apiError(response)); return; }
    const sentences = Number(response.headers.get("X-Sentences") || 1);
    // The streamed WAV's size fields say "unknown"; the pieces are kept, then the header is made exact.
    const reader = response.body.getReader();
    const pieces = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pieces.push(value);
      received += value.length;
      const seconds = Math.max(0, received - 44) / (2 * health.sample_rate);
      busy(seconds.toFixed(1) + " s of audio received (" + sentences + " sentence" + (sentences > 1 ? "s" : "") +
        ", " + ((performance.now() - started) / 1000).toFixed(1) + " s)");
    }
    const bytes = new Uint8Array(received);
    let at = 0;
    for (const piece of pieces) { bytes.set(piece, at); at += piece.length; }
    wavHeader(new DataView(bytes.buffer), received - 44, health.sample_rate);
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
    $("result").src = resultUrl;
    $("download").href = resultUrl;
    $("download").hidden = false;
    $("result-info").textContent = ((received - 44) / (2 * health.sample_rate)).toFixed(2) + " s, made in " +
      ((performance.now() - started) / 1000).toFixed(1) + " s";
  } catch (e) {
    showError("Synthesis failed: " + e.message);
  } finally {
    $("synthesize").disabled = false;
    busy("");
  }
}

window.addEventListener("DOMContentLoaded", async () => {
  $("voice").addEventListener("change", voiceChanged);
  $("text").addEventListener("input", countChars);
  $("upload-button").addEventListener("click", uploadVoice);
  $("delete-voice").addEventListener("click", deleteVoice);
  $("record").addEventListener("click", toggleRecording);
  $("synthesize").addEventListener("click", synthesize);
  $("api-key").addEventListener("change", () => loadVoices());
  if (!window.MediaRecorder) $("record").hidden = true;
  try {
    await loadHealth();
    await loadVoices();
  } catch (e) {
    showError("The server cannot be reached: " + e.message);
  }
});
