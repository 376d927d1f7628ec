"""Generation: the progressive detail synthesizer and its async service (not built yet).

Will own: the zoom pipeline stages (observe, context, super-resolve, edit, depth registration,
auxiliary views, splat init, optimisation) and the worker process that runs them.
Does not own: the world model (`engine`, which it imports), windows or files.
"""
