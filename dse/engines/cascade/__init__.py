"""The cascade engine (multi-vector, `mode: cascade`; `engine.CascadeEngine`): binary candidates, then exact MaxSim rescoring."""
