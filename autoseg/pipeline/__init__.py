"""Multi-step work: plan, fit_fold (train, then validate), predict_step, find_best, export,
evaluate, the demo and the benchmark. Each step is one function a command-line front door
calls; the pieces it joins (training, inference, evaluation, reporting) do not know each
other."""
