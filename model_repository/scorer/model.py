"""Triton Python-backend model for the embedded server: token ids -> the graph's one output
(a cross-encoder's SCORES [1] per pair, or a two-tower encoder's EMBEDDINGS [dim] per text)
with the runtime its config names (runtimes.py: ONNX Runtime, or OpenVINO in bf16 / f32).

execute only checks the requests Triton hands over and puts them in the scorer's own queue
(scorer_queue.py: why Triton's queue is not used for waiting), then returns; a worker thread
scores them. Inputs are ragged: each request is padded to its own longest pair. The worker
takes waves of at most max_pairs_per_wave pairs (a larger request is a wave of its own),
interactive requests before batch ones, and answers each wave's requests as soon as it is
done. Within a wave all pairs are pooled, sorted by real length and run in chunks capped by
pairs and by tokens (admission.scorer_runs), so a chunk is padded only to its own longest
member; outputs are then scattered back to their requests. The queue keeps the config's queue
policies: a request whose deadline (the call's, or the policy's timeout) passes while it waits
is answered "Request timeout expired" unscored, and one that finds its priority's queue full
"Exceeds maximum queue size", as Triton would. What is queued and each wave's start and end,
in the tokens the scorer computes (admission.computed_tokens), feed the work ahead and the
measured speed that admission control reads (admission.py).
"""

import json
import os
import sys
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

# artifacts.py, runtimes.py, admission.py and scorer_queue.py are copied next to this file when the repository is built.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admission import ScorerSide, computed_tokens, deadline_s, is_batch, scorer_runs  # noqa: E402
from artifacts import ModelSetupError, checked_setup  # noqa: E402
from runtimes import MODEL_FILES, RuntimeSetupError, open_runtime  # noqa: E402
from scorer_queue import ScorerQueue, Waiting  # noqa: E402

REQUIRED_PARAMETERS = (
    "runtime",
    "runtime_options",
    "intra_op_threads",
    "vocab_size",
    "pad_id",
    "max_length",
    "max_pairs_per_run",
    "max_tokens_per_run",
    "max_pairs_per_wave",
)


class TritonPythonModel:
    def initialize(self, args):
        try:
            config, parameters, version_dir = checked_setup(args, "scorer", REQUIRED_PARAMETERS)
        except ModelSetupError as error:
            raise pb_utils.TritonModelException(str(error))
        runtime = parameters["runtime"]
        try:
            self.runtime = open_runtime(
                runtime,
                os.path.join(version_dir, MODEL_FILES.get(runtime, "model.onnx")),
                threads=int(parameters["intra_op_threads"]),
                **json.loads(parameters["runtime_options"]),
            )
        except (RuntimeSetupError, TypeError, ValueError) as error:
            raise pb_utils.TritonModelException(f"{args['model_name']}: {error}")
        self.input_names = self.runtime.input_names
        output = config["output"][0]
        self.output_name, self.output_dims = output["name"], [int(d) for d in output["dims"]]
        self.vocab_size = int(parameters["vocab_size"])
        self.pad_id = int(parameters["pad_id"])
        self.max_length = int(parameters["max_length"])
        self.max_pairs_per_run = int(parameters["max_pairs_per_run"])
        self.max_tokens_per_run = int(parameters["max_tokens_per_run"])
        self.max_pairs_per_wave = int(parameters["max_pairs_per_wave"])
        self.admission = ScorerSide(args["model_name"])
        # Padding efficiency on Triton's metrics endpoint: real tokens / tokens computed.
        self.token_family = pb_utils.MetricFamily(  # must outlive its metrics
            name="polyrank_scorer_tokens_total",
            description="Tokens the scorer ran through its runtime: real ones and all computed (real + padding)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.real_tokens = self.token_family.Metric(labels={"kind": "real", "model": args["model_name"]})
        self.computed_tokens = self.token_family.Metric(labels={"kind": "computed", "model": args["model_name"]})
        # Time waited in the scorer's own queue, which Triton's nv_inference_queue_duration_us cannot see.
        self.queue_family = pb_utils.MetricFamily(
            name="polyrank_scorer_queue_duration_us",
            description="Cumulative microseconds requests waited in the Python scorer's own queue",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.queue_duration_us = {
            batch: self.queue_family.Metric(labels={"model": args["model_name"], "priority": "batch" if batch else "interactive"})
            for batch in (False, True)
        }
        self.timeouts_s, max_sizes = _queue_policies(config)
        self.queue = ScorerQueue(max_sizes)
        self.worker = threading.Thread(target=self._score_queued, name="scorer", daemon=True)
        self.worker.start()

    def execute(self, requests):
        # Every request is answered through its response sender, by the worker thread once
        # scored (execute returns None at once), or here if it is malformed or finds its queue full.
        arrived = time.monotonic()
        entries = []
        for request in requests:
            try:
                inputs, lengths = self._read_inputs(request)
            except ValueError as error:
                _answer(request, _error(str(error), pb_utils.TritonError.INVALID_ARG))
                continue
            batch = is_batch(request)
            work_tokens = computed_tokens(lengths, self.max_pairs_per_run, self.max_tokens_per_run)
            deadline = arrived + deadline_s(request, self.timeouts_s[batch])
            entries.append(Waiting(request, inputs, lengths, batch, arrived, deadline, work_tokens))
        # Counted as received before the worker can take them: a wave scored before it was counted
        # as received would leave its tokens looking on their way, ahead of the caller's next request.
        # Batch work waiting is not ahead of interactive requests: it is counted when its wave starts.
        interactive_tokens = sum(entry.work_tokens for entry in entries if not entry.batch)
        self.admission.received(interactive_tokens, interactive_tokens)
        self._unscored(self.queue.put(entries), pb_utils.TritonError.UNAVAILABLE, lambda entry: (
            f"Exceeds maximum queue size: {self.queue.max_size[entry.batch]} "
            f"{'batch' if entry.batch else 'interactive'} requests already wait for the scorer"))
        return None

    def _unscored(self, entries, code, message):
        """Answers each entry with an error, message(entry), and counts its tokens as dropped."""
        for entry in entries:
            _answer(entry.request, _error(message(entry), code))
        self.admission.dropped(sum(entry.work_tokens for entry in entries if not entry.batch))

    def _score_queued(self):
        """The worker thread: scores waves from the queue until finalize closes it. It must not
        die: requests would then wait unanswered, so a failure answers its wave and goes on."""
        while True:
            taken = self.queue.next_wave(self.max_pairs_per_wave)
            if taken is None:
                return
            try:
                self._take(*taken)
            except Exception as error:
                pb_utils.Logger.log_error(f"scorer: a wave failed outside the runtime: {error}")
                for entry in [*taken[0], *taken[1]]:  # those already answered are logged again, not raised
                    _answer(entry.request, _error(f"scorer failed: {error}", pb_utils.TritonError.INTERNAL))

    def _take(self, wave, expired):
        """Answers what expired or was cancelled, and scores the rest of the wave."""
        now = time.monotonic()
        for entry in [*wave, *expired]:
            self.queue_duration_us[entry.batch].increment((now - entry.arrived) * 1e6)
        self._unscored(expired, pb_utils.TritonError.UNAVAILABLE, lambda entry: (
            f"Request timeout expired: waited {now - entry.arrived:.2f} s in the scorer's queue; not scored"))
        cancelled = [entry for entry in wave if entry.request.is_cancelled()]
        self._unscored(cancelled, pb_utils.TritonError.CANCELLED, lambda entry: "cancelled before it was scored")
        wave = [entry for entry in wave if entry not in cancelled]
        if wave:
            self._score_wave(wave)

    def _score_wave(self, wave):
        tokens = sum(entry.work_tokens for entry in wave)
        self.admission.wave_started(tokens, newly_held=sum(entry.work_tokens for entry in wave if entry.batch))
        try:
            outputs = self._score(wave)
        except Exception as error:  # every request still gets exactly one answer
            self.admission.wave_done(tokens, scored=False)
            for entry in wave:
                _answer(entry.request, _error(f"scorer failed: {error}", pb_utils.TritonError.INTERNAL))
            return
        self.admission.wave_done(tokens)
        for entry, request_outputs in zip(wave, outputs):
            tensor = pb_utils.Tensor(self.output_name, request_outputs.reshape(-1, *self.output_dims))
            _answer(entry.request, pb_utils.InferenceResponse(output_tensors=[tensor]))

    def finalize(self):
        self._unscored(self.queue.close(), pb_utils.TritonError.UNAVAILABLE, lambda entry: "the scorer is unloading; not scored")
        self.worker.join()  # its current wave is answered first
        self.admission.close()

    def _read_inputs(self, request):
        inputs = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"{name} is missing")
            inputs[name] = tensor.as_numpy()
        ids, mask = inputs["INPUT_IDS"], inputs["ATTENTION_MASK"]
        for name, array in inputs.items():
            if array.shape != ids.shape:
                raise ValueError(
                    f"{name} has shape {list(array.shape)}, INPUT_IDS has {list(ids.shape)}; they must match"
                )
        if ids.ndim != 2 or 0 in ids.shape:
            raise ValueError(f"INPUT_IDS must have shape [pairs, tokens], got {list(ids.shape)}")
        if ids.shape[1] > self.max_length:
            raise ValueError(
                f"INPUT_IDS has {ids.shape[1]} tokens per row, more than max_length {self.max_length}"
            )
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(
                f"INPUT_IDS must lie in [0, {self.vocab_size}), got values from {ids.min()} to {ids.max()}"
            )
        # Pooling rows across requests trims each row to its real length, which needs
        # right padding: a mask of 1s followed by 0s, starting with a 1.
        if not (np.isin(mask, (0, 1)).all() and (mask[:, 1:] <= mask[:, :-1]).all()):
            raise ValueError("ATTENTION_MASK must be 1s followed by 0s in every row (right padding)")
        if not mask[:, 0].all():
            raise ValueError("ATTENTION_MASK has a row with no tokens")
        return inputs, mask.sum(axis=1)

    def _score(self, wave):
        """Runs all rows of a wave's requests; returns one float32 array [rows, ...] per request."""
        pooled = {name: _stack([entry.inputs[name] for entry in wave]) for name in self.input_names}
        pooled["INPUT_IDS"][pooled["ATTENTION_MASK"] == 0] = self.pad_id
        lengths = np.concatenate([entry.lengths for entry in wave])
        outputs = np.empty((len(lengths), *self.output_dims), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        computed = 0
        for chunk in scorer_runs(order, lengths, self.max_pairs_per_run, self.max_tokens_per_run):
            width = int(lengths[chunk].max())  # the chunk is padded only to its own longest pair
            feed = {name: np.ascontiguousarray(array[chunk, :width]) for name, array in pooled.items()}
            outputs[chunk] = self.runtime.run(feed).reshape(len(chunk), *self.output_dims)
            computed += width * len(chunk)
        self.real_tokens.increment(int(lengths.sum()))
        self.computed_tokens.increment(computed)
        request_ends = np.cumsum([entry.pairs for entry in wave])[:-1]
        return np.split(outputs, request_ends)


def _queue_policies(config):
    """From the config's dynamic_batching: ({batch: timeout in s}, {batch: max queued requests}),
    batch work being priority level 2 (no limit where a policy sets none)."""
    batching = config.get("dynamic_batching", {})
    policies = {False: batching.get("default_queue_policy", {}),
                True: batching.get("priority_queue_policy", {}).get("2", batching.get("default_queue_policy", {}))}
    timeouts = {batch: int(policy.get("default_timeout_microseconds", 0)) / 1e6 or float("inf") for batch, policy in policies.items()}
    sizes = {batch: int(policy.get("max_queue_size", 0)) or float("inf") for batch, policy in policies.items()}
    return timeouts, sizes


def _answer(request, response):
    """Sends a request's one response. A failure to send (the request was cancelled meanwhile)
    is logged, not raised: the requests after it in this execution still get theirs."""
    try:
        request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    except Exception as error:
        pb_utils.Logger.log_warn(f"scorer: an answer could not be sent: {error}")


def _stack(arrays):
    """Stacks [rows_i, width_i] arrays into one [sum of rows, widest] array, zero-filled on the right."""
    stacked = np.zeros((sum(len(a) for a in arrays), max(a.shape[1] for a in arrays)), dtype=np.int64)
    start = 0
    for array in arrays:
        stacked[start : start + len(array), : array.shape[1]] = array
        start += len(array)
    return stacked


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
