"""The bad-input catalogue: one id per bad input, with the part of the message users see that
the tests assert on. docs/errors.md lists every id with its full message; `test_catalogue.py`
checks that each fragment below appears there verbatim and that a test uses every id.

The fragments leave out what varies between runs (paths, file:line, PIDs).
"""

CATALOGUE: dict[str, str] = {
  # ---- Layers ---------------------------------------------------------------------------------
    "L1": "[input f32[2,5] has 5 features on its last axis, but the kernel is f32[3,4] (inputs "
          "(..., 3))]",
    "L2": "input 0 has shape () but expected (..., None). [expects inputs of shape (..., d_in), "
          "got a scalar f32[]]",
    "L3": "Dense_4: TypeError: stack item 0 has dtype <U1 (str32[1,3]); layers take arrays of "
          "numbers or booleans",
    "L4": "[expects inputs of rank 4 (batch, height, width, channels) for a 2-D window, got "
          "f32[8,8,3]]",
    "L5": "[input f32[1,8,8,4] has 4 channels, but the kernel has shape (3, 3, 3, 8) (kernel_size "
          "+ (in_channels=3, filters))]",
    "L6": "Conv: ValueError: input f32[1,2,2,3] is too small for kernel_size=(3, 3) with padding "
          "'VALID': the output f32[1,0,0,8] is empty",
    "L7": "[ids must have an integer dtype, got f32[2]; cast them with ids.astype(jnp.int32)]",
    "L8": "Embedding_10_4: ValueError: 1 id(s) outside [0, 10), e.g. 12",
    "L9": "out_of_range='clip'",
    "L10": "Embedding: out_of_range must be one of ('clip', 'fill', 'raise'), got 'wrap'",
    "L11": "CausalAttention: AssertionError: [Chex] Assertion assert_shape failed: Error in shape "
           "compatibility check: input 0 has shape (5, 8) but expected (None, None, 8). [x must "
           "be (batch, length, d_feature=8)]",
    "L12": "input 0 has shape (2, 5, 6) but expected (None, None, 8). [x must be (batch, length, "
           "d_feature=8)]",
    "L13": "CausalAttention: d_feature=8 is not divisible by n_heads=3",
    "L14": "[mask must be 4-d, e.g. (batch, 1, 1, length) from PaddingMask]",
    "L15": "Serial: ValueError: Serial_in2 got 1 input(s), expects 2",
    "L16": "Parallel: ValueError: Parallel_in2_out2 got 1 input(s), expects 2",
    "L17": "Parallel needs at least two sublayers, got 1",
    "L18": "Branch: ValueError: Branch_in2_out2 got 1 input(s), expects 2",
    "L19": "Select: index 3 is out of range for n_in=2",
    "L20": "Select[0,2]: ValueError: Select[0,2]_in3_out2 got 2 input(s), expects 3",
    "L21": "Cond: branches differ in arity: true Dup_out2 is 1->2, false the identity "
           "(false=None) is 1->1",
    "L22": "input 0 has type float32 but expected bool. [Cond: the condition Positive must "
           "return a boolean scalar, got float32[]]",
    "L23": "Fn 'F': argument 'y' has a default value; use functools.partial or a closure to fix "
           "it instead",
    "L24": "F: ValueError: F_out2 returned 1 output(s), but n_out is 2",
    "L25": "Dropout: mode must be one of ('train', 'eval', 'predict'), got 'training'",
    "L26": "[targets i32[5] must have the shape of model_output f32[4,3] without its last (class) "
           "axis, or its whole shape for target distributions]",
    "L27": "CrossEntropyLoss: TypeError: targets must be class ids (integer or float) or target "
           "distributions, got bool[4]",
    "L28": "[weights f32[3] must broadcast to the targets' shape i32[4]]",
    "L29": "Dense_4: TypeError: stack item 0 is None; layers take arrays",
  # ---- Configs, registries, command line ------------------------------------------------------
    "C1": "unknown config key --config.train.stepz; did you mean --config.train.steps?",
    "C2": "FATAL Flags parsing error: flag --config.train.steps=ten: invalid literal for int() "
          "with base 10: 'ten'",
    "C3": "config.train.eval_evry is not a known key; did you mean config.train.eval_every?",
    "C4": "config.train.steps is missing (required)",
    "C5": "config.train.batch_size must be an integer >= 1, got 0",
    "C6": "Unknown model 'Transformerlm'; did you mean 'TransformerLM'? (known models:",
    "C7": "model 'MLP' does not take argument(s) ['layer_width']; did you mean 'layer_widths'? "
          "(it takes: layer_widths, n_classes",
    "C8": "Unknown optimizer 'lamm'; did you mean 'lamb'? (known optimizers: adabelief, "
          "adadelta, adafactor,",
    "C9": "optimizer 'adamw' does not take argument(s) ['beta2']; did you mean 'b2'?",
    "C10": "Unknown schedule 'cosine'; known schedules:",
    "C11": "Unknown layer 'CrossEntropyLos'; did you mean 'CrossEntropyLoss'?",
    "C12": "declax-train: error: RegistryError: Unknown model 'MLPP'; did you mean 'MLP'?",
    "C13": "config.optimiser is not a known section; did you mean config.optimizer?",
  # ---- Meshes and batches ---------------------------------------------------------------------
    "S1": "config.mesh {'data': 2}: data*fsdp*tensor = 2, but 1 devices are available (set one "
          "axis to -1 to use the rest)",
    "S2": "config.mesh: unknown axis ['model']; the mesh axes are ('data', 'fsdp', 'tensor')",
    "S3": "only one axis may be -1, got ['data', 'fsdp']",
    "S4": "config.train.batch_size=6 is not divisible by the mesh's data*fsdp = 4",
    "S5": "config.sharding_rules['embed']: unknown mesh axis ['model']; the mesh axes are",
    "S6": "config.train.batch_size=9 is not divisible by the 2 processes",
  # ---- Data -----------------------------------------------------------------------------------
    "D1": "Unknown dataset 'declax_digitz'; did you mean 'declax_digits'? Registered declax "
          "datasets:",
    "D2": "Dataset 'mnist' is unavailable",
    "D3": "dataset 'declax_digits' has no split 'validation'",
    "D4": "cannot resume the training data at checkpoint step 2",
  # ---- Training -------------------------------------------------------------------------------
    "T1": "training loss is nan at step 3: stopping; the last good checkpoint is step 2 in",
    "T2": "training inputs are non-finite at step 3: item 0 of the batch (f32[8,4,4,1]) has 1 "
          "NaN and 1 infinite values; stopped before training on it; the last good checkpoint "
          "is step 2 in",
    "T3": "the TrainTask's labeled_data ran out of batches at step 3; training data must be an "
          "endless iterator (num_epochs=None)",
    "T4": "TrainTask: optimizer must be an optax.GradientTransformation, got function",
    "T5": "[targets i32[8,1] must have the shape of model_output f32[8,3] without its last "
          "(class) axis",
    "T6": "training loss is nan at step 1",
  # ---- Work directory and checkpoints ---------------------------------------------------------
    "K1": "is not writable (NotADirectoryError: Not a directory); choose another one (--workdir / "
          "output_dir) or fix its permissions",
    "K2": "is in use by another declax run (pid",
    "K3": "Taking over the lock of",
    "K4": "foreign files are left alone",
    "K5": "stale temporaries are removed",
    "K6": "does not match the model's train state (a different model or optimizer?); nothing was "
          "restored.",
    "K7": "cannot be read: ValueError: OUT_OF_RANGE: Error opening \"zarr\" driver",
    "K8": "cannot be read: it holds no train state (an incomplete copy, or not a declax "
          "checkpoint). Nothing was restored or deleted.",
    "K9": "cannot be read: JSONDecodeError",
    "K10": "No space left on device",  # OSError or tensorstore's RESOURCE_EXHAUSTED
    "K11": "a half-written checkpoint is never loaded",
  # ---- Several processes ----------------------------------------------------------------------
    "M1": "process 0 of 2 lost contact with another process during training step",
    "M2": "Terminating process because the JAX distributed service detected fatal errors",
    "M3": "The following tasks are unhealthy (stopped sending heartbeats)",
  # ---- Library use: Linen interop, CLI, export --------------------------------------------------
    "I1": "TwoInputs.__call__(a, b) cannot take 1 stack item(s) (missing a required argument: "
          "'b'); state its arity with tl.Linen(TwoInputs(...), n_in=2, n_out=...)",
    "I2": "Linen wraps a flax.linen.Module, got function",
    "I3": "declax-train: error: --workdir is required (the directory for checkpoints, metrics "
          "and the resolved config)",
    "I4": "config.json not found: is",
  # ---- Reliability round 2 (issue 17) --------------------------------------------------------
    "R1": "the eval batch size (config.data.eval_batch_size) is 45, not divisible by the mesh's "
          "data*fsdp = 2",
    "R2": "eval task 0 cannot run on the eval model (",
    "R3": "eval_model has layers in 'train' mode",
    "R4": "EvalTask produced no batches",
    "R5": "is unusable (",
    "R6": "training gradient norm is nan at step 1",
    "R7": "Received signal",
    "R8": "keep_checkpoints must be an integer >= 1 or None (keep all), got 0",
    "R9": "the data went away",
    "R10": "this Loop is closed",
    "R11": "is used by another live Loop in this process",
    "R12": "Loop.run(n_steps): n_steps must be a whole number >= 0, got",
    "R13": "holds no data position for task 0",
    "R14": "differs from the digest stored when it was saved (flipped bits on the disk?)",
    "R15": "cannot be read: it holds step 2 (its meta item says so): the directory was renamed "
           "or copied. Rename it back",
    "R16": "checkpoints is a file, but a run writes a directory there; move it away",
    "R17": "config.schedule.learning_rate must be >= 0, got -0.001",
    "R18": "config.schedule.learning_rate=",
    "R19": "config.optimizer.clip_norm must be a number > 0 or None (no clipping)",
    "R20": "config.train.loss='Accuracy' is a metric without a gradient",
    "R21": "config.train.seed must be < 2**63",
    "R22": "config.model.n_classes must be an integer >= 1, got 0",
    "R23": "evaluating on",
    "R24": "beyond config.train.steps=2: nothing was trained",
    "R25": "declax-train: error: config file ",
    "R26": "declax-train: error: --workdir is empty (an unset variable?)",
    "R27": "was saved with a different optimizer (its optimizer state is structured "
           "differently:",
    "R29": "is a directory, but a run writes a file there; move it away, or use another output "
           "directory",
    "R30": "which does not exist; create the target or fix the link",
    "R31": "4 fake CPU devices on 2 cores: XLA's all-reduce rendezvous may abort the run",
    "R32": "is a file, not a directory; set config.data.data_dir (or DECLAX_DATA_DIR / "
           "TFDS_DATA_DIR) to a directory",
    "R33": "split 'train[:0]' of dataset 'declax_digits' has no examples; choose a split with "
           "data",
    "R34": "cannot be read (RuntimeError:",
    "R35": "it is prepared once into the data dir, which must be a writable directory",
    "R36": "no evaluation metric 'eval/acuracy' (the evaluations give eval/accuracy, eval/loss); "
           "did you mean eval/accuracy?",
    "R28": ", outside the model's 3 classes (outputs float32[8, 3]; labels and token ids must "
           "be in [0, 3))",
    "R28b": "hold 3 at step 5, outside the model's 3 classes (outputs float32[8, 3]); labels "
            "must be in [0, 3): set config.model.n_classes / vocab_size to at least 4, or check "
            "the data's labels. Stopped; nothing from step 5 on was saved; the last good "
            "checkpoint is step 4 in",
    "R28c": ", outside its vocabulary of 10; token ids must be in [0, 10): ",
    "R28d": "the eval data's targets (batch item 1) hold 7 at batch 2 of eval task 'eval', "
            "outside the model's 3 classes",
  # ---- Trax checkpoints (declax.trax_compat) -----------------------------------------------
    "X1": "no such file (expected a Trax checkpoint 'model.pkl.gz' or a file written by "
          "Layer.save_to_file)",
    "X2": "Trax checkpoints are gzipped pickles (model.pkl.gz)",
    "X3": "not a Trax checkpoint: expected a dict with 'flat_weights' (Loop.save_checkpoint or "
          "Layer.save_to_file), got ['weights']",
    "X4": "refused to unpickle posix.mkdir: a Trax checkpoint holds only numpy arrays and Trax's "
          "ShapeDtype, and loading this class could run code. Load only checkpoints written by "
          "Trax's Loop or Layer.save_to_file",
    "X5": "refused an array of dtype object (Python objects)",
    "X6": "layers_5/kernel: declax shape (16, 4), Trax weights #4 has shape (16, 5)",
    "X7": "2 Trax weights left over (#4..: (16, 5), (5,))",
    "X8": "no optimizer slots next to it (model.opt_slots0.npy.gz); use weights_only=True to load "
          "the weights alone",
    "X9": "no declax equivalent of trax.models.TransformerLm; did you mean TransformerLM? (known: "
          "MLP, RNNLM, ReformerLM, Transformer, TransformerEncoder, TransformerLM)",
    "X10": "trax.models.TransformerLM does not take ['n_layer']; did you mean n_layers? It "
           "takes: vocab_size, d_model,",
    "X11": "attention_type 'SelfAttention(chunk_lenn=16)': SelfAttention does not take "
           "['chunk_lenn']; did you mean chunk_len?",
    "X12": "ReformerLM: loss_sparsity / loss_sparsity_prob are not supported (declax has no sparse "
           "output layers); use loss_sparsity=0, loss_sparsity_prob=None (a plain Dense)",
  # ---- Trax layers (docs/errors.md "Trax layers") -------------------------------------------
    "TL1": "AssertShape: ShapeAssertionError: expected shapes 'aa', got [(10, 5)] ('a' is 5 "
           "here but 10 before; bound {'a': 10})",
    "TL2": "shape specification 'b..c': each shape may contain one '...' (three dots) and no "
           "other dots",
    "TL3": "LocallyConnected1d: kernel_size must be odd (a window centred on each position), "
           "got 2",
    "TL4": "FilterResponseNorm: init_epsilon and init_learnt_epsilon must be positive, got 0.0 "
           "and 0.0001",
    "TL5": "Bad_in2.backward returned 1 input gradient(s) for 2 input(s); return one per input, "
           "packaged like the inputs (a bare array for one)",
    "TL6": "input 0 has rank 2 (shape (2, 3)) but expected 3. [MakeZeroState expects a rank 3 "
           "input (batch_size, sequence_length, feature_depth), got f32[2,3]]",
  # ---- Accelerators (mixed precision, attention) ---------------------------------------------
    "A1": "config.dtype='bf16' is not a compute dtype; did you mean bfloat16? (use one of float32, "
          "bfloat16, float16; parameters stay float32 whatever it is)",
    "A2": "config.dtype='bfloat16', but model 'NoDtypeNet' takes no dtype argument; add `dtype` "
          "to its signature (pass it to its layers) or use config.dtype='float32'",
    "A3": "attention implementation must be one of ('cudnn', 'xla', 'cpu') or None, got 'flash'",
    "A4": "attention_type 'NoDtypeAttention' takes no dtype, so it cannot compute in bfloat16; "
          "use dtype=None or an attention layer with a dtype field",
  # ---- Text: tokenizers, stream pipelines, translation, decoding (issue 12) ------------------
    "TX1": "the file is corrupt or of another kind: train it again "
           "(SentencePieceTokenizer.train) or copy it from the prepared dataset",
    "TX2": "(sha256 differs): the model file was replaced or corrupted; copy both files from the "
           "same place",
    "TX3": "(no tokenizer.json); save one there with tokenizer.save(directory), e.g. from the "
           "prepared dataset's directory",
    "TX4": "unknown vocab_type 'sentencepeice'; known: ['subword', 'sentencepiece', 'char', "
           "'bytes']; did you mean sentencepiece?",
    "TX5": "BucketByLength: 2 boundaries [8, 16] need 3 batch sizes (one per bucket, the last for "
           "longer examples; Trax's own tests also pass 2, with no bucket for longer examples), "
           "got 1: [4]",
    "TX6": "build the same pipeline (same steps and arguments) to resume, or start this one from "
           "its beginning",
    "TX7": "cannot save a value of type object in a stream position (examples must be arrays, "
           "numbers, strings, bytes, tuples, lists or dicts)",
    "TX8": "needs an input stream, got None: put a source first, e.g. Serial(TFDS('name', "
           "keys=...), ...) or Serial(lambda _: my_generator(), ...)",
    "TX9": "does not exist; did you mean de? Languages with catalogs under ",
    "TX10": "holds no .mo files; install translated packages for 'sv' or pick another language "
            "(de, fr",
    "TX11": "fewer than min_pairs=1000; install more translated packages, pick another language, "
            "or lower min_pairs",
    "TX12": "the tokenizer does not belong to this checkpoint; copy the tokenizer.json (+ "
            "spm.model) of the run that trained it",
    "TX13": "(start token + prompt of 10 + max_length 20 - 1), but the model's context (max_len, "
            "the length of Serial's cache) is 24: shorten the prompt or lower max_length to 14, "
            "or train a model with a larger max_len",
}
