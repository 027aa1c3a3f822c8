"""The modelport command, run as a user runs it: a separate process."""

from __future__ import annotations

import subprocess
import sys

KEY = "sk-cli-secret-998877"


def cli(*args, env=None, input=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "modelport", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, input=input,
    )  # fmt: skip


def test_chat_streams_from_upstream(upstream):
    result = cli("chat", "-m", "openai/m", "--api-base", upstream.base_url, "-s", "sys", "-t", "0.3", "--max-tokens", "9", "good morning")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "You said: good morning"
    sent = upstream.last.json
    assert sent["stream"] is True and sent["temperature"] == 0.3 and sent["max_tokens"] == 9
    assert sent["messages"][0] == {"role": "system", "content": "sys"}


def test_chat_no_stream_and_stdin(upstream):
    result = cli("chat", "-m", "openai/m", "--api-base", upstream.base_url, "--no-stream", "-", input="from stdin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "You said: from stdin"
    assert "stream" not in upstream.last.json


def test_dry_run_redacts_and_sends_nothing(upstream):
    result = cli("chat", "-m", "openai/m", "--api-base", upstream.base_url, "--dry-run", "-o", "top_k=5", "hi", env={"OPENAI_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"POST {upstream.base_url}/chat/completions")
    assert "Bearer [REDACTED]" in result.stdout and KEY not in result.stdout + result.stderr
    assert '"top_k": 5' in result.stdout
    assert upstream.requests == []


def test_errors_exit_non_zero_without_secrets(upstream):
    upstream.reply(status=401, json={"error": {"message": f"bad key {KEY}"}})
    result = cli("chat", "-m", "openai/m", "--api-base", upstream.base_url, "--api-key", KEY, "hi")
    assert result.returncode == 1
    assert "AuthenticationError" in result.stderr and KEY not in result.stderr + result.stdout
    unknown = cli("chat", "-m", "nope/m", "hi")
    assert unknown.returncode == 2 and "unknown provider 'nope'" in unknown.stderr


def test_providers_lists_installed():
    result = cli("providers")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "modelport-openai-compat" in lines["openai"] and "chat" in lines["openai"]
    assert "text_completion" in lines["text-completion-openai"]


def test_demo_runs_end_to_end():
    result = cli("demo", "ping")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "You said: ping"
    assert "completion tokens" in result.stderr


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("modelport")
    assert exe, "the modelport console script is not on PATH"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "chat" in result.stdout


def test_chat_with_a_config_alias(upstream, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"model_list:\n  - model_name: fast\n    params: {{model: openai/gpt-fast, api_base: {upstream.base_url}, api_key: {KEY}}}\n")
    result = cli("chat", "--config", str(config), "-m", "fast", "via alias")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "You said: via alias" and upstream.last.json["model"] == "gpt-fast"
    dry = cli("chat", "--config", str(config), "-m", "fast", "--dry-run", "x")
    assert dry.stdout.startswith(f"POST {upstream.base_url}/chat/completions") and KEY not in dry.stdout


def test_plugins_add_their_options_to_core_commands():
    """ModelScope's image flags come from its plugin (cli_commands hook), not from the core."""
    help_text = cli("image", "--help").stdout
    assert "ModelScope image options" in help_text and "--negative-prompt" in help_text
    result = cli("image", "-m", "modelscope/Tongyi-MAI/Z-Image-Turbo", "a fox", "--negative-prompt", "blurry", "--steps", "9", "--dry-run",
                 env={"MODELSCOPE_TOKEN": KEY})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"negative_prompt": "blurry"' in result.stdout and '"steps": 9' in result.stdout
    assert KEY not in result.stdout and "[REDACTED]" in result.stdout
    # Options are added to the command they name only.
    assert "--negative-prompt" not in cli("chat", "--help").stdout


def test_version_flag():
    import modelport

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"modelport {modelport.__version__}"


def test_plugin_options_reach_only_their_providers_calls():
    result = cli("image", "-m", "openai/dall-e-3", "a fox", "--steps", "9", "--poll-interval", "0.5", "--dry-run", env={"OPENAI_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert '"steps"' not in result.stdout  # ModelScope's option, not sent to another provider
    assert '"prompt": "a fox"' in result.stdout
