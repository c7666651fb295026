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
    /// The share of every rate limit left unused, so that the small differences between the
    /// local clock and count and the provider's never tip a request over its limit.
    /// <value>The default is 0.02 (a lane keeps to 98% of its limits).</value>
    /// </summary>
    public double LimitHeadroom { get; set; } = 0.02;

    /// <summary>
    /// Output tokens expected of a request that names no limit, until the lane has learned the
    /// real average from answers.
    /// <value>The default is 256.</value>
    /// </summary>
    public int DefaultOutputTokens { get; set; } = 256;

    /// <summary>
    /// Consecutive outage failures (no answer, 5xx, 408) that open an upstream's breaker.
    /// <value>The default is 8: random faults at 10% line up that long once in 100 million requests.</value>
    /// </summary>
    public int BreakerFailuresToOpen { get; set; } = 8;

    /// <summary>
    /// How long an open breaker waits before its first probe; each failed probe doubles it.
    /// <value>The default is 2 seconds.</value>
    /// </summary>
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The longest wait between probes of a failing upstream.
    /// <value>The default is 8 seconds: a recovered upstream is found again within that.</value>
    /// </summary>
    public TimeSpan BreakerMaxBreakDuration { get; set; } = TimeSpan.FromSeconds(8);

    /// <summary>
    /// Refusals of the key in a row (401, 403, an authentication or permission error) that stop
    /// a lane; never more than the lane's concurrency, so a lane of one request stops at the first.
    /// <value>The default is 3.</value>
    /// </summary>
    public int RefusalsToStop { get; set; } = 3;

    /// <summary>
    /// How often a lane stopped for a refused key sends one request to see whether the key is
    /// taken again (it was fixed at the provider, or its file was replaced).
    /// <value>The default is 30 seconds.</value>
    /// </summary>
    public TimeSpan RefusedKeyProbeInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// When set, <see cref="Dispatcher.RunAsync"/> returns as soon as nothing can be sent and
    /// some of the waiting requests wait for a lane whose key is refused (as <c>shepherd run</c>
    /// does: the user has to fix the key). A server keeps waiting and probing instead.
    /// <value>The default is false.</value>
    /// </summary>
    public bool StopWhenKeyRefused { get; set; }

    /// <summary>
    /// When set, <see cref="Dispatcher.RunAsync"/> returns once nothing could be sent for this
    /// long because every lane with waiting requests had its upstream down; null to wait for
    /// the upstreams however long they are away (as a server does).
    /// <value>The default is null.</value>
    /// </summary>
    public TimeSpan? MaxOutage { get; set; }

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
    /// The first retry of a transient failure that came as a sprinkle, among successes of a
    /// healthy lane, waits up to this long; each later one up to twice as long. A sprinkle says
    /// nothing about the upstream's health, so waiting as long as after a run of failures would
    /// only keep the batch's last answers waiting.
    /// <value>The default is 50 milliseconds.</value>
    /// </summary>
    public TimeSpan IsolatedRetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(50);

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
        if (LimitHeadroom is < 0 or >= 0.5 || double.IsNaN(LimitHeadroom))
        {
            throw new ArgumentOutOfRangeException(nameof(LimitHeadroom), LimitHeadroom, "The headroom is a share from 0 to below 0.5.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerFailuresToOpen, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(BreakerBreakDuration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerMaxBreakDuration, BreakerBreakDuration);
        ArgumentOutOfRangeException.ThrowIfLessThan(RefusalsToStop, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RefusedKeyProbeInterval, TimeSpan.Zero);
        if (MaxOutage is { } outage)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(outage, TimeSpan.Zero, nameof(MaxOutage));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAttempts, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryBaseDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(IsolatedRetryBaseDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryMaxDelay, RetryBaseDelay);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LeaseDuration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCommitBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(IdlePollInterval, TimeSpan.Zero);
        return (DispatchOptions)MemberwiseClone();
    }
}
