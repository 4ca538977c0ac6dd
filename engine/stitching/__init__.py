"""Identity stitching: which lead keys are one person (docs/identity.md).

Facts stay on the aggregate of the key they arrived under; `identity.linked`, `lead.merged` and
`lead.unmerged` are facts too, each with the engine's identity decision (`Lead.Linked`) beside
it. The identity map folds those decisions in a fixed order, so every process and every replay
reads the same people off the same log; person-level state is computed from the union of the
members' facts, which makes an unmerge exact by construction.
"""
