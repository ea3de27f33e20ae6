"""Pure cost functions shared by the analytic and discrete-event engines."""
