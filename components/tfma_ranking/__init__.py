"""The pipeline's gate on TFX's stock Evaluator: a full-ranking TFMA metric per behavior
(``metric``), the ``EvalConfig`` of the gate (``gate``), reading the results back
(``results``)."""
