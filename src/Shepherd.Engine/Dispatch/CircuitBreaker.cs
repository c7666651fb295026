namespace Shepherd.Engine.Dispatch;

/// <summary>Whether an upstream is asked.</summary>
public enum BreakerState
{
    /// <summary>Healthy: requests go.</summary>
    Closed,

    /// <summary>Failing: nothing goes until the break ends.</summary>
    Open,

    /// <summary>The break has ended: one probe goes; its answer closes or reopens the breaker.</summary>
    HalfOpen,
}

/// <summary>
/// An upstream's circuit breaker. It opens after a run of consecutive outage failures (no
/// answer, 5xx, 408): random faults rarely line up that long, an unreachable host always does.
/// While open, nothing is sent; then one probe goes, and each failed probe doubles the break up
/// to a cap. Any answer that is not an outage failure (a success, a 4xx, a 429) closes it. Not
/// thread-safe: the dispatcher's loop owns it, which also makes it exact under a fake clock.
/// </summary>
internal sealed class CircuitBreaker(int failuresToOpen, TimeSpan breakDuration, TimeSpan maxBreakDuration)
{
    private int _consecutiveFailures;
    private int _failedProbes;

    public BreakerState State { get; private set; }

    /// <summary>When an open breaker lets the next probe go.</summary>
    public DateTimeOffset OpenUntil { get; private set; }

    /// <summary>
    /// Zero when a request may go now; the time to wait while open; null while a probe is out
    /// (the probe's answer decides).
    /// </summary>
    public TimeSpan? WaitBeforeSending(DateTimeOffset now, int inFlight)
    {
        if (State == BreakerState.Open)
        {
            if (now < OpenUntil)
            {
                return OpenUntil - now;
            }

            State = BreakerState.HalfOpen;
        }

        return State == BreakerState.HalfOpen && inFlight > 0 ? null : TimeSpan.Zero;
    }

    /// <summary>Records an answer that says the upstream is up.</summary>
    public void Succeeded()
    {
        _consecutiveFailures = 0;
        _failedProbes = 0;
        State = BreakerState.Closed;
    }

    /// <summary>Records an outage failure; returns true when it opened the breaker.</summary>
    public bool Failed(DateTimeOffset now)
    {
        _consecutiveFailures++;
        switch (State)
        {
            case BreakerState.HalfOpen:
                _failedProbes++;
                Open(now);
                return true;
            case BreakerState.Closed when _consecutiveFailures >= failuresToOpen:
                Open(now);
                return true;
            default:
                return false;
        }
    }

    private void Open(DateTimeOffset now)
    {
        State = BreakerState.Open;
        var doubled = breakDuration.Ticks * (1L << Math.Min(_failedProbes, 20));
        OpenUntil = now + TimeSpan.FromTicks(Math.Min(maxBreakDuration.Ticks, doubled));
    }
}
