namespace Shepherd.Simulator.Batches;

/// <summary>Which provider's batch API a job was created through.</summary>
internal enum BatchDialect
{
    /// <summary>OpenAI's files and batches.</summary>
    OpenAI,

    /// <summary>Anthropic's message batches.</summary>
    Anthropic,
}

/// <summary>Where a line of a job stands at a moment.</summary>
internal enum LineFate
{
    /// <summary>Not finished, and the job has not ended.</summary>
    Pending,

    /// <summary>Answered with success.</summary>
    Succeeded,

    /// <summary>Answered with an error of its own (a 4xx or 5xx).</summary>
    Errored,

    /// <summary>Never ran: the job's window ended first.</summary>
    Expired,

    /// <summary>Had not run when the job was cancelled.</summary>
    Cancelled,
}

/// <summary>A request of a job, as the client sent it.</summary>
/// <param name="CustomId">The client's id of the request.</param>
/// <param name="Body">The request body.</param>
internal sealed record BatchRequest(string CustomId, byte[] Body);

/// <summary>The answer a line gets when it runs.</summary>
/// <param name="Status">The HTTP status the request would have had in realtime.</param>
/// <param name="Body">The answer body, or the error envelope.</param>
/// <param name="RequestId">The provider's id of the request.</param>
/// <param name="InputTokens">Prompt tokens billed.</param>
/// <param name="OutputTokens">Output tokens billed.</param>
internal sealed record LineAnswer(int Status, byte[] Body, string RequestId, int InputTokens, int OutputTokens);

/// <summary>A line of a job, its fate drawn when the job was created.</summary>
/// <param name="CustomId">The client's id of the request.</param>
/// <param name="Key">The key of the request body (<see cref="SimulatedProvider.KeyOf"/>), as executions are counted.</param>
/// <param name="FinishesAt">When it runs; null for a line that never does (it expires).</param>
/// <param name="Answer">What it is answered when it runs; null when it never does.</param>
internal sealed record BatchLine(string CustomId, ulong Key, DateTimeOffset? FinishesAt, LineAnswer? Answer);

/// <summary>How many lines of a job stand where, at a moment.</summary>
internal readonly record struct LineCounts(int Pending, int Succeeded, int Errored, int Expired, int Cancelled, long InputTokens, long OutputTokens)
{
    public int Total => Pending + Succeeded + Errored + Expired + Cancelled;
}

/// <summary>
/// A batch job of the simulator. Nothing runs on a timer: where the job and each line stand is
/// worked out from the clock whenever it is looked at. The job ends <see cref="SimulatorOptions.BatchLatency"/>
/// after it was created, or <see cref="SimulatorOptions.BatchCancelLatency"/> after a cancel; a line
/// that finished before a cancel was asked keeps its answer. Not thread-safe: its book locks.
/// </summary>
internal sealed class SimulatedBatch(string id, BatchDialect dialect, string endpoint, IReadOnlyList<BatchLine> lines, DateTimeOffset createdAt, SimulatorOptions options)
{
    /// <summary>The window both providers promise.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromHours(24);

    public string Id => id;

    public BatchDialect Dialect => dialect;

    public string Endpoint => endpoint;

    public IReadOnlyList<BatchLine> Lines => lines;

    public DateTimeOffset CreatedAt => createdAt;

    public DateTimeOffset ExpiresAt => createdAt + Window;

    /// <summary>OpenAI: the uploaded file the lines came from.</summary>
    public string? InputFileId { get; init; }

    /// <summary>OpenAI: the model of the first line, as the batch object names it.</summary>
    public string? Model { get; init; }

    /// <summary>OpenAI: the client's metadata; null for none.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Metadata { get; init; }

    /// <summary>When a cancel was asked; null while none was.</summary>
    public DateTimeOffset? CancelAskedAt { get; private set; }

    /// <summary>OpenAI: the file of successful lines, once the job has ended and has any.</summary>
    public string? OutputFileId { get; set; }

    /// <summary>OpenAI: the file of failed lines, once the job has ended and has any.</summary>
    public string? ErrorFileId { get; set; }

    /// <summary>True once the ended job's lines have been counted (and, for OpenAI, its files written).</summary>
    public bool Settled { get; set; }

    /// <summary>When the job ends (or ended): its latency after creation, or the cancel's latency after a cancel.</summary>
    public DateTimeOffset EndsAt => CancelAskedAt is { } asked ? asked + options.BatchCancelLatency : createdAt + options.BatchLatency;

    /// <summary>True when a line never runs, so the job ends by its window rather than by its last line.</summary>
    public bool Expires { get; } = lines.Any(l => l.FinishesAt is null);

    public bool HasEnded(DateTimeOffset now) => now >= EndsAt;

    /// <summary>Asks the job to cancel; false when it has ended, or a cancel was asked before (the first one stands).</summary>
    public bool Cancel(DateTimeOffset now)
    {
        if (CancelAskedAt is not null || HasEnded(now))
        {
            return false;
        }

        CancelAskedAt = now;
        return true;
    }

    public LineFate FateOf(BatchLine line, DateTimeOffset now)
    {
        if (line is { FinishesAt: { } at, Answer: { } answer } && at <= now && (CancelAskedAt is not { } asked || at <= asked))
        {
            return answer.Status == 200 ? LineFate.Succeeded : LineFate.Errored;
        }

        return !HasEnded(now) ? LineFate.Pending : CancelAskedAt is not null ? LineFate.Cancelled : LineFate.Expired;
    }

    public LineCounts CountsAt(DateTimeOffset now)
    {
        int pending = 0, succeeded = 0, errored = 0, expired = 0, cancelled = 0;
        long input = 0, output = 0;
        foreach (var line in lines)
        {
            switch (FateOf(line, now))
            {
                case LineFate.Succeeded:
                    succeeded++;
                    input += line.Answer!.InputTokens;
                    output += line.Answer.OutputTokens;
                    break;
                case LineFate.Errored:
                    errored++;
                    break;
                case LineFate.Expired:
                    expired++;
                    break;
                case LineFate.Cancelled:
                    cancelled++;
                    break;
                default:
                    pending++;
                    break;
            }
        }

        return new LineCounts(pending, succeeded, errored, expired, cancelled, input, output);
    }
}
