"""The cascade engine (multi-vector, `mode: cascade`; `engine.CascadeEngine`): candidates, then MaxSim rescoring."""
