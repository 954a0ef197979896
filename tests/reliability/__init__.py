"""The reliability suite (issue 14): autoseg driven as a hostile-but-realistic user would.

One file per gap: ``test_hostile_headers`` (1: header claims checked before allocating),
``test_png_folders`` (2), ``test_orphans`` (3: pool workers die with a SIGKILLed parent),
``test_outputs`` (4: outputs checked before the work), ``test_plans_refused`` (5),
``test_model_zips`` (6), ``test_flags`` (7), ``test_quiet_traps`` (8); and what already
held: ``test_known_good`` (NaN/Inf, label values, shape/affine mismatch, truncated and fake
files, pickled .npy, malicious checkpoint, zip-slip) and ``test_kill_resume`` (SIGKILL and
resume of convert and predict; plan and train are marked slow). Each case asserts the exit
code, that the message names the file, and that nothing written before was lost.
"""
