namespace Shepherd.Client;

/// <summary>How a <see cref="BatchCollector"/> gathers single requests into batches.</summary>
public sealed class BatchCollectorOptions
{
    /// <summary>The model of every request whose body names none (every prompt).</summary>
    public string? Model { get; set; }

    /// <summary>
    /// The url the requests go to.
    /// <value>The default is the client's: <c>/v1/chat/completions</c> (<c>/v1/messages</c> on the Anthropic API).</value>
    /// </summary>
    public string? Endpoint { get; set; }

    /// <summary>
    /// The most requests in one batch, and the flush size when <see cref="TargetLatency"/> is not set:
    /// a batch is flushed as soon as this many requests are pending.
    /// <value>The default is 1,000.</value>
    /// </summary>
    public int MaxBatchSize { get; set; } = 1000;

    /// <summary>
    /// The smallest flush size the adaptation (<see cref="TargetLatency"/>) may choose; a value above
    /// <see cref="MaxBatchSize"/> is lowered to it. Batches flushed by age or by
    /// <see cref="BatchCollector.FlushAsync"/> may be smaller.
    /// <value>The default is 10.</value>
    /// </summary>
    public int MinBatchSize { get; set; } = 10;

    /// <summary>
    /// The longest a request waits for its batch to fill: once the oldest pending request is this
    /// old, the pending requests are flushed whatever their number.
    /// <value>The default is 5 s.</value>
    /// </summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The time to a result (from a batch's flush until its results are handed out) to keep near
    /// by adapting the flush size; null keeps the flush size at <see cref="MaxBatchSize"/>.
    /// After each batch the flush size is multiplied by 0.75 when the batch took longer than this,
    /// by 1.25 when it took less than half of it, and stays otherwise; always between
    /// <see cref="MinBatchSize"/> and <see cref="MaxBatchSize"/>. It starts at <see cref="MaxBatchSize"/>.
    /// <value>The default is null: no adaptation.</value>
    /// </summary>
    public TimeSpan? TargetLatency { get; set; }

    /// <summary>
    /// Batches in flight at once (from their create until their results are handed out). When that
    /// many are in flight, due flushes wait for one to end; requests keep being added until a full
    /// flush size of them is pending, and further adds wait (asynchronously, in order) for room.
    /// So at most this many batches plus one flush size of requests are held.
    /// <value>The default is 4.</value>
    /// </summary>
    public int MaxConcurrentBatches { get; set; } = 4;

    /// <summary>
    /// How long to wait for each batch to end (passed to <see cref="ShepherdClient.WaitForCompletionAsync(string, IProgress{BatchProgress}?, TimeSpan?, CancellationToken)"/>);
    /// when it passes, the batch's callers fail, and the batch goes on on the server.
    /// <value>The default is null: the client's <see cref="ShepherdClient.DefaultTimeout"/>.</value>
    /// </summary>
    public TimeSpan? WaitTimeout { get; set; }

    /// <summary>
    /// How long <see cref="BatchCollector.DisposeAsync"/> waits for the pending requests and the
    /// batches in flight; when it passes, the callers still waiting fail and the batches go on on
    /// the server without the collector.
    /// <value>The default is null: wait for every batch (each bounded by <see cref="WaitTimeout"/>).</value>
    /// </summary>
    public TimeSpan? DisposeTimeout { get; set; }

    internal BatchCollectorOptions Validated()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MinBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(MaxAge, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConcurrentBatches, 1);
        if (TargetLatency is { } target)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(target, TimeSpan.Zero, nameof(TargetLatency));
        }

        if (WaitTimeout is { } wait)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(wait, TimeSpan.Zero, nameof(WaitTimeout));
        }

        if (DisposeTimeout is { } dispose)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(dispose, TimeSpan.Zero, nameof(DisposeTimeout));
        }

        var copy = (BatchCollectorOptions)MemberwiseClone();
        copy.MinBatchSize = Math.Min(MinBatchSize, MaxBatchSize);
        return copy;
    }
}
