namespace Shepherd.Engine.Dispatch;

/// <summary>How the dispatcher sends items: how many at once, how often, how patiently.</summary>
public sealed class DispatchOptions
{
    /// <summary>
    /// The most requests in flight at once on one lane, unless the lane's limits say otherwise.
    /// The lane adapts below it: it grows while answers are healthy and halves on overload.
    /// <value>The default is 32.</value>
    /// </summary>
    public int Concurrency { get; set; } = 32;

    /// <summary>
    /// Requests in flight on a new lane, before it has learned how much the upstream takes.
    /// <value>The default is 8.</value>
    /// </summary>
    public int InitialConcurrency { get; set; } = 8;

    /// <summary>
    /// After an overload signal halves a lane's concurrency, it is not halved again for this long.
    /// <value>The default is 1 second.</value>
    /// </summary>
    public TimeSpan ConcurrencyCoolDown { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Output tokens expected of a request that names no limit, until the lane has learned the
    /// real average from answers.
    /// <value>The default is 256.</value>
    /// </summary>
    public int DefaultOutputTokens { get; set; } = 256;

    /// <summary>
    /// The share of failed requests (no answer, 5xx, 408) within the sampling duration that opens an upstream's breaker.
    /// <value>The default is 0.5.</value>
    /// </summary>
    public double BreakerFailureRatio { get; set; } = 0.5;

    /// <summary>
    /// Requests within the sampling duration before the failure ratio counts.
    /// <value>The default is 10.</value>
    /// </summary>
    public int BreakerMinimumThroughput { get; set; } = 10;

    /// <summary>
    /// The window over which the failure ratio is measured.
    /// <value>The default is 10 seconds.</value>
    /// </summary>
    public TimeSpan BreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long an open breaker waits before its first probe; each failed probe doubles it.
    /// <value>The default is 2 seconds.</value>
    /// </summary>
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The longest wait between probes of a failing upstream.
    /// <value>The default is 15 seconds.</value>
    /// </summary>
    public TimeSpan BreakerMaxBreakDuration { get; set; } = TimeSpan.FromSeconds(15);

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
        ArgumentOutOfRangeException.ThrowIfLessThan(InitialConcurrency, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ConcurrencyCoolDown, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(DefaultOutputTokens, 0);
        if (BreakerFailureRatio is <= 0 or > 1 || double.IsNaN(BreakerFailureRatio))
        {
            throw new ArgumentOutOfRangeException(nameof(BreakerFailureRatio), BreakerFailureRatio, "The breaker's failure ratio is a share above 0 and at most 1.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerMinimumThroughput, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerSamplingDuration, TimeSpan.FromMilliseconds(500));
        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerBreakDuration, TimeSpan.FromMilliseconds(500));
        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerMaxBreakDuration, BreakerBreakDuration);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAttempts, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryBaseDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryMaxDelay, RetryBaseDelay);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LeaseDuration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCommitBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(IdlePollInterval, TimeSpan.Zero);
        return (DispatchOptions)MemberwiseClone();
    }
}
