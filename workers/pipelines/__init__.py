"""One pure-torch entry point per job kind, with typed results — what a task adapter calls,
what a benchmark or a notebook calls too:

* :func:`workers.pipelines.inspect.inspect_model` → ``InspectionResult``;
* :func:`workers.pipelines.train.run_training` → ``TrainOutcome``;
* :func:`workers.pipelines.predict.run_prediction` → ``PredictOutcome``.

They take plain values (paths, model builders, ``TrainSpec``, callbacks) and never Django
objects; :mod:`.inputs` turns files into model builders, weights and data sets.
"""
