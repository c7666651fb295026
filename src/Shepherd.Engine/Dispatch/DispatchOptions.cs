namespace Shepherd.Engine.Dispatch;

/// <summary>How the dispatcher sends items: how many at once, how often, how patiently.</summary>
public sealed class DispatchOptions
{
    /// <summary>
    /// Requests in flight at once.
    /// <value>The default is 32.</value>
    /// </summary>
    public int Concurrency { get; set; } = 32;

    /// <summary>
    /// Attempts per item before a transient failure becomes its final result.
    /// <value>The default is 6.</value>
    /// </summary>
    public int MaxAttempts { get; set; } = 6;

    /// <summary>
    /// The first retry waits up to this long; each later one up to twice as long (full jitter).
    /// <value>The default is 1 second.</value>
    /// </summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The longest backoff between attempts, unless the upstream asks for longer.
    /// <value>The default is 60 seconds.</value>
    /// </summary>
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How long a claimed item stays leased. It must outlast the request timeout, so a lease
    /// never ends under a request that is still running.
    /// <value>The default is 30 minutes.</value>
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>
    /// The most outcomes written in one transaction.
    /// <value>The default is 2,000.</value>
    /// </summary>
    public int MaxCommitBatch { get; set; } = 2000;

    /// <summary>
    /// How often an idle dispatcher looks for new batches when nobody tells it of one.
    /// <value>The default is 1 second.</value>
    /// </summary>
    public TimeSpan IdlePollInterval { get; set; } = TimeSpan.FromSeconds(1);

    internal DispatchOptions Validated()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Concurrency, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Concurrency, 10_000);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAttempts, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryBaseDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryMaxDelay, RetryBaseDelay);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LeaseDuration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCommitBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(IdlePollInterval, TimeSpan.Zero);
        return (DispatchOptions)MemberwiseClone();
    }
}
