namespace Shepherd.Engine.Model;

/// <summary>Where a batch is in its life. Derived from its items and written by the store.</summary>
public enum BatchStatus
{
    /// <summary>The input is being read and checked; no item is dispatched yet.</summary>
    Validating,

    /// <summary>Items are being dispatched.</summary>
    InProgress,

    /// <summary>Every item has ended; results are being assembled.</summary>
    Finalizing,

    /// <summary>Every item has ended.</summary>
    Completed,

    /// <summary>The input was rejected; no item ran.</summary>
    Failed,

    /// <summary>A cancel was asked for; items in flight are finishing.</summary>
    Cancelling,

    /// <summary>Cancelled; finished items keep their results.</summary>
    Cancelled,

    /// <summary>The completion window passed before every item ended.</summary>
    Expired,
}

/// <summary>
/// The words a batch's status is written as: in the server's answers, on the dashboard, in the
/// summary of <c>shepherd run</c> and in the stores' rows, so a script (or a person reading the
/// state file) sees the same word wherever it looks.
/// </summary>
public static class BatchStatusWords
{
    /// <summary>The word for <paramref name="status"/>, such as <c>in_progress</c> or <c>cancelled</c>.</summary>
    public static string Of(BatchStatus status) => status switch
    {
        BatchStatus.Validating => "validating",
        BatchStatus.InProgress => "in_progress",
        BatchStatus.Finalizing => "finalizing",
        BatchStatus.Completed => "completed",
        BatchStatus.Failed => "failed",
        BatchStatus.Cancelling => "cancelling",
        BatchStatus.Cancelled => "cancelled",
        BatchStatus.Expired => "expired",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "Not a batch status."),
    };

    /// <summary>
    /// The word for <paramref name="batch"/>'s status. A cancelled batch says <c>cancelling</c>
    /// until it is <c>cancelled</c>, also while its result files are written: the OpenAI
    /// lifecycle goes straight from one to the other.
    /// </summary>
    public static string Of(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.Status == BatchStatus.Finalizing && batch.CancellingAt is not null ? "cancelling" : Of(batch.Status);
    }
}
