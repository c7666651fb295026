using Shepherd.Engine.Model;

namespace Shepherd.Engine.Dispatch;

/// <summary>Where the batch of an answered item stands: still running, or stopped by a cancel or by its window.</summary>
internal enum BatchStanding
{
    Running,
    Cancelled,
    Expired,
}

/// <summary>What is known of an answer when the fate of its item is decided.</summary>
/// <param name="Verdict">The answer as <see cref="AttemptClassifier"/> (or a provider's result line) classified it.</param>
/// <param name="Attempt">The attempt the answer ends, from 1, less the re-asks of answers that did not fit: those do not use the attempts a transient failure has.</param>
internal readonly record struct Answer(Verdict Verdict, int Attempt)
{
    /// <summary>How often the item was asked again already because an answer did not fit.</summary>
    public int Reasks { get; init; }

    /// <summary>How often its batch lets an answer that does not fit be asked again.</summary>
    public int MaxReasks { get; init; }

    /// <summary>The upstream answered 429: the lane went too fast, which says nothing of the request.</summary>
    public bool RateLimited { get; init; }

    /// <summary>The upstream is taken for down: its failures say nothing of the request.</summary>
    public bool UpstreamDown { get; init; }

    /// <summary>Transient failures come in a run on the lane, not as a sprinkle among successes (see <see cref="FailureWindow"/>).</summary>
    public bool InFailureRun { get; init; }

    /// <summary>The wait the upstream asked for.</summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>Where the item's batch stands, where the caller looked (the dispatch loop does not: its purge ends what a cancel or expiry left queued).</summary>
    public BatchStanding Batch { get; init; }
}

/// <summary>What an answer does to its item.</summary>
/// <param name="Kind">The outcome to record; null when the item only waits for its lane again: nothing is recorded and no attempt is used.</param>
/// <param name="NextAttemptAt">For <see cref="OutcomeKind.Retry"/>, when the next attempt may go; the default otherwise, as <see cref="ItemOutcome"/> takes it.</param>
/// <param name="Delay">For <see cref="OutcomeKind.Retry"/>, how long that is after the answer.</param>
internal readonly record struct OutcomeDecision(OutcomeKind? Kind, DateTimeOffset NextAttemptAt = default, TimeSpan Delay = default)
{
    /// <summary>The item waits for its lane again, without an outcome and without using an attempt.</summary>
    public static OutcomeDecision Requeue => default;
}

/// <summary>
/// Decides what an answer does to its item, for the dispatch loop and for the results of native
/// jobs alike: a success succeeds and a permanent failure fails; an answer that does not fit
/// what was asked is asked again while re-asks are left, and fails after; a refused key, a rate limit or
/// an outage says nothing of the request, so the item waits for its lane without using an
/// attempt; a transient failure of a batch that was cancelled or expired meanwhile ends with its
/// batch; otherwise it is retried while attempts are left, and fails once they are used up.
/// Holds no state of its own but the random source of the backoff's jitter: the same answer
/// decides the same way, on any thread, with no allocation.
/// </summary>
internal sealed class OutcomePolicy
{
    private readonly int _maxAttempts;
    private readonly Random? _random;
    private readonly TimeSpan _baseDelay;
    private readonly TimeSpan _isolatedBaseDelay;
    private readonly TimeSpan _maxDelay;

    private OutcomePolicy(int maxAttempts, Random? random, TimeSpan baseDelay, TimeSpan isolatedBaseDelay, TimeSpan maxDelay)
    {
        _maxAttempts = Math.Max(1, maxAttempts);
        _random = random;
        _baseDelay = baseDelay;
        _isolatedBaseDelay = isolatedBaseDelay;
        _maxDelay = maxDelay;
    }

    /// <summary>
    /// For the dispatch loop: a retry waits the options' backoff, drawn from <paramref name="random"/>
    /// (locked while drawn, since whoever handed it in may draw from it too).
    /// </summary>
    public static OutcomePolicy ForLanes(DispatchOptions options, Random random)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(random);
        return new(options.MaxAttempts, random, options.RetryBaseDelay, options.IsolatedRetryBaseDelay, options.RetryMaxDelay);
    }

    /// <summary>For the results of native jobs: a retry goes into the next job at once, since the provider's own batch was the wait.</summary>
    public static OutcomePolicy ForJobs(int maxAttempts) => new(maxAttempts, null, TimeSpan.Zero, TimeSpan.Zero, TimeSpan.Zero);

    /// <summary>Decides what <paramref name="answer"/>, received at <paramref name="now"/>, does to its item.</summary>
    public OutcomeDecision Decide(in Answer answer, DateTimeOffset now)
    {
        switch (answer.Verdict)
        {
            case Verdict.Success:
                return new(OutcomeKind.Succeeded);
            case Verdict.Permanent:
                return new(OutcomeKind.Failed);
            case Verdict.Unfit:
                // Asked again at once while re-asks are left and the batch runs; else it fails, its answer kept.
                return answer.Reasks < answer.MaxReasks && answer.Batch == BatchStanding.Running
                    ? new(OutcomeKind.Retry, now)
                    : new(OutcomeKind.Failed);
        }

        // A refused key, a rate limit or an outage says nothing about the request: it waits for the lane without using an attempt.
        if (answer.Verdict == Verdict.Refused || answer.RateLimited || answer.UpstreamDown)
        {
            return OutcomeDecision.Requeue;
        }

        switch (answer.Batch)
        {
            case BatchStanding.Cancelled:
                return new(OutcomeKind.Cancelled);
            case BatchStanding.Expired:
                return new(OutcomeKind.Expired);
        }

        if (answer.Attempt >= _maxAttempts)
        {
            return new(OutcomeKind.Failed);
        }

        var delay = RetryDelay(answer);
        return new(OutcomeKind.Retry, now + delay, delay);
    }

    /// <summary>
    /// A failure of a run waits as long as the upstream may need, and at least its retry-after.
    /// One among successes is retried soon: the upstream plainly answers, so a retry-after on it
    /// speaks of one backend's moment, not of the upstream.
    /// </summary>
    private TimeSpan RetryDelay(in Answer answer)
    {
        if (_random is null)
        {
            return TimeSpan.Zero;
        }

        lock (_random)
        {
            return answer.InFailureRun
                ? Backoff.Delay(answer.Attempt, _baseDelay, _maxDelay, answer.RetryAfter, _random)
                : Backoff.Delay(answer.Attempt, _isolatedBaseDelay, _maxDelay, null, _random);
        }
    }

    /// <summary>Where <paramref name="batch"/> stands: a cancel wins over the window (a cancelled batch that then expired ends cancelled).</summary>
    public static BatchStanding StandingOf(BatchRecord? batch) => batch switch
    {
        { Status: BatchStatus.Cancelling or BatchStatus.Cancelled } => BatchStanding.Cancelled,
        { ExpiredAt: not null } => BatchStanding.Expired,
        _ => BatchStanding.Running,
    };

    /// <summary>
    /// What becomes of an item that was leased but never sent, once its batch no longer runs
    /// here: it ends with a cancelled or expired batch, and otherwise (the batch was taken
    /// back, or is gone) goes back to the store unspent.
    /// </summary>
    public static OutcomeKind Unsent(BatchRecord? batch) => StandingOf(batch) switch
    {
        BatchStanding.Cancelled => OutcomeKind.Cancelled,
        BatchStanding.Expired => OutcomeKind.Expired,
        _ => OutcomeKind.Released,
    };
}
