"""The page in a real browser: Debian's headless Chromium driven by Selenium loads it from a server on a free loopback
port, uploads a voice, synthesizes, and finds a WAV of plausible duration in the audio element.

Skipped, with the reason, where selenium, chromium or chromedriver is missing (README's install block installs them).
``LCTTS_SCREENSHOT=docs/serve.png`` saves the page's picture there (else in the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.serve.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def browser():
    """Headless Chromium under Selenium, from the system's packages only (no driver download)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=900,1250", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


# The audio element's source (a blob URL) read back by the page's own script context: the WAV header's fields.
READ_WAV = """
const done = arguments[arguments.length - 1];
fetch(document.getElementById("result").src).then((r) => r.arrayBuffer()).then((buffer) => {
  const view = new DataView(buffer);
  const text = (at) => String.fromCharCode(...new Uint8Array(buffer, at, 4));
  done({riff: text(0), wave: text(8), rate: view.getUint32(24, true), bits: view.getUint16(34, true),
        data: view.getUint32(40, true), size: buffer.byteLength,
        duration: document.getElementById("result").duration});
}).catch((e) => done({error: String(e)}));
"""


@pytest.mark.slow
def test_page_uploads_a_voice_and_plays_speech(tiny_valle, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser()
    try:
        with ServerProcess(tiny_valle, tmp_path / "voices") as server:
            wait = WebDriverWait(driver, 60)
            driver.get(server.url + "/")
            wait.until(lambda d: len(Select(d.find_element(By.ID, "voice")).options) >= 3)
            assert "Model valle" in driver.find_element(By.ID, "server").text
            driver.find_element(By.TAG_NAME, "summary").click()
            driver.find_element(By.ID, "upload-file").send_keys(str(ROOT / "examples" / "prompt.wav"))
            driver.find_element(By.ID, "upload-transcript").send_keys(
                (ROOT / "examples" / "prompt.txt").read_text().strip())
            driver.find_element(By.ID, "upload-name").send_keys("My reader")
            driver.find_element(By.ID, "upload-button").click()
            wait.until(lambda d: Select(d.find_element(By.ID, "voice")).first_selected_option.text.startswith(
                "My reader"))
            assert driver.find_element(By.ID, "delete-voice").is_enabled()  # an uploaded voice can be deleted
            driver.find_element(By.ID, "text").send_keys("Hello there. This page speaks in the uploaded voice.")
            driver.find_element(By.ID, "synthesize").click()
            wait.until(EC.visibility_of_element_located((By.ID, "download")))
            wav = driver.execute_async_script(READ_WAV)
            assert wav.get("error") is None, wav
            assert (wav["riff"], wav["wave"], wav["rate"], wav["bits"]) == ("RIFF", "WAVE", 24000, 16)
            assert wav["data"] == wav["size"] - 44  # the streamed header's sizes were made exact
            seconds = wav["data"] / 48000
            assert 0.5 < seconds < 60 and abs(wav["duration"] - seconds) < 0.05  # two sentences and a pause
            assert not driver.find_element(By.ID, "error").is_displayed()
            assert not driver.find_element(By.ID, "progress").is_displayed()  # done: the progress bar is gone
            shot = Path(os.environ.get("LCTTS_SCREENSHOT") or tmp_path / "serve.png")
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            # an error is shown with the API's message
            driver.find_element(By.ID, "text").clear()
            driver.find_element(By.ID, "text").send_keys("\u4f60\u597d")
            driver.find_element(By.ID, "synthesize").click()
            wait.until(EC.visibility_of_element_located((By.ID, "error")))
            assert "cannot speak" in driver.find_element(By.ID, "error").text
            # the decoding options reach the API: a bad one is refused with its message, good ones decode
            driver.find_element(By.CSS_SELECTOR, "#decoding summary").click()
            assert not driver.find_element(By.ID, "guidance-label").is_displayed()  # this VALL-E was not trained so
            driver.find_element(By.ID, "text").clear()
            driver.find_element(By.ID, "text").send_keys("Hello there.")
            temperature = driver.find_element(By.ID, "temperature")
            temperature.clear()
            temperature.send_keys("0")
            driver.find_element(By.ID, "synthesize").click()
            wait.until(lambda d: "temperature must be above 0" in d.find_element(By.ID, "error").text)
            temperature.clear()
            temperature.send_keys("0.7")
            driver.find_element(By.ID, "seed").send_keys("11")
            driver.find_element(By.ID, "greedy").click()
            before = driver.find_element(By.ID, "result").get_attribute("src")
            driver.find_element(By.ID, "synthesize").click()
            wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("src") != before)
            assert not driver.find_element(By.ID, "error").is_displayed()
        assert server.returncode == 0
    finally:
        driver.quit()
