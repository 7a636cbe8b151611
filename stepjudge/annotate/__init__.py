"""StepWiser's data engine: sample chunked solutions, estimate Q after every chunk with Monte-Carlo
rollouts, and turn the Q trajectories into step labels (Abs-Q, Rel-Ratio, Rel-Effective)."""
