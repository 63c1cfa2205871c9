"""Progressive rollouts: plans (data), analysis (pure decisions), state (durable), the controller."""
