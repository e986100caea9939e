"""The readable run output: kfp.local's text in, one line per step out, everything logged."""

import io

from pipelines.run_output import ReadableOutput

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def feed(tmp_path, text: str) -> tuple[list[str], str]:
    terminal = io.StringIO()
    output = ReadableOutput(tmp_path / "kfp.log", terminal)
    for chunk in (text[:37], text[37:]):  # lines arrive split across writes
        output.write(chunk)
    output.close()
    return terminal.getvalue().splitlines(), (tmp_path / "kfp.log").read_text()


def test_steps_epochs_and_cache_hits_are_shown_and_the_rest_only_logged(tmp_path):
    text = (f"12:00:00.000 - INFO - Executing task {CYAN}'train'{RESET}\n"
            "12:00:01.000 - INFO - Streamcapture: loading data\n"
            "2026-12-02T12:00:05Z epoch=1 loss=0.9 val_macro_auc=0.81\n"
            "2026-12-02T12:00:09Z epoch=2 loss=0.7 val_macro_auc=0.88\n"
            f"12:00:10.000 - INFO - Task {CYAN}'train'{RESET} finished with status "
            f"{GREEN}SUCCESS{RESET}\n"
            "    confidenceMetrics: [{'confidenceThreshold': 0.5, 'recall': 0.9}]\n"
            "Task evaluate cache hit (key=abc); skipping execution.\n"
            f"Pipeline {CYAN}'rnn-classifier-training'{RESET} finished with status "
            f"{GREEN}SUCCESS{RESET}\n")
    shown, log = feed(tmp_path, text)
    assert shown[0] == "  train: started"
    assert shown[1:3] == ["    epoch 1: val_macro_auc=0.81", "    epoch 2: val_macro_auc=0.88"]
    assert shown[3].startswith("  train: success (")
    assert shown[4:] == ["  evaluate: reused from the cache",
                         "pipeline rnn-classifier-training: success"]
    assert log == text  # every byte, colours included


def test_a_failed_step_shows_its_whole_output(tmp_path):
    text = ("Executing task 'validate-data'\n"
            "Traceback (most recent call last):\n"
            "rnn_classifier.data.DataError: data/validation_labels.npy: row 0 is not one-hot\n"
            f"Task 'validate-data' finished with status {RED}FAILURE{RESET}\n")
    shown, _ = feed(tmp_path, text)
    assert shown[0] == "  validate-data: started"
    assert "    | rnn_classifier.data.DataError: data/validation_labels.npy: row 0 is not " \
           "one-hot" in shown
    assert shown[-1].startswith("  validate-data: failure (")
