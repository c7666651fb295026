namespace Shepherd.Engine.Dispatch;

/// <summary>Live counters of a dispatcher, for progress displays. Reads are lock-free snapshots.</summary>
public sealed class DispatchCounters
{
    private long _inFlight;
    private long _attempts;
    private long _retries;
    private long _requeued;
    private long _rateLimited;

    /// <summary>Requests sent and not yet answered.</summary>
    public long InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Requests sent since the dispatcher started, retries included.</summary>
    public long Attempts => Volatile.Read(ref _attempts);

    /// <summary>Attempts that failed for a transient reason and were queued again, using an attempt.</summary>
    public long Retries => Volatile.Read(ref _retries);

    /// <summary>Requests sent again without using an attempt: answered 429, sent while their upstream was down, or refused for the key.</summary>
    public long Requeued => Volatile.Read(ref _requeued);

    /// <summary>Attempts the upstream answered with 429.</summary>
    public long RateLimited => Volatile.Read(ref _rateLimited);

    internal void Started()
    {
        Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _attempts);
    }

    internal void Ended(int? status)
    {
        Interlocked.Decrement(ref _inFlight);
        if (status == 429)
        {
            Interlocked.Increment(ref _rateLimited);
        }
    }

    internal void Retried() => Interlocked.Increment(ref _retries);

    internal void Requeue() => Interlocked.Increment(ref _requeued);
}
