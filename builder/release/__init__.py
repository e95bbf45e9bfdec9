"""Releasing baked AWS images: channels, rollouts (rolling, blue-green) and pruning.

One job per module: `awsclient` (sessions, retries, error translation), `images` (what an
AMI is and whether it may ship), `channels` (promote, rollback, revoke), `rollout`
(launch templates, instance refresh, blue-green), `prune` (deregister what nothing uses),
`views` (human output).
"""
