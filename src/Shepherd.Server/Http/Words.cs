using Shepherd.Engine.Model;

namespace Shepherd.Server.Http;

/// <summary>The words the APIs use for the engine's states.</summary>
internal static class Words
{
    /// <summary>
    /// The OpenAI status of a batch. A cancelled batch says <c>cancelling</c> until it is
    /// <c>cancelled</c>, also while its result files are written: the OpenAI lifecycle goes
    /// straight from one to the other.
    /// </summary>
    public static string Status(BatchRecord batch) =>
        batch.Status == BatchStatus.Finalizing && batch.CancellingAt is not null ? "cancelling" : Status(batch.Status);

    public static string Status(BatchStatus status) => status switch
    {
        BatchStatus.Validating => "validating",
        BatchStatus.InProgress => "in_progress",
        BatchStatus.Finalizing => "finalizing",
        BatchStatus.Completed => "completed",
        BatchStatus.Failed => "failed",
        BatchStatus.Cancelling => "cancelling",
        BatchStatus.Cancelled => "cancelled",
        _ => "expired",
    };

    public static string Priority(BatchPriority priority) => priority switch
    {
        BatchPriority.Low => "low",
        BatchPriority.High => "high",
        _ => "normal",
    };

    public static BatchPriority? ParsePriority(string text) => text switch
    {
        "low" => BatchPriority.Low,
        "normal" => BatchPriority.Normal,
        "high" => BatchPriority.High,
        _ => null,
    };

    public static string ItemStatus(ItemState state) => state switch
    {
        ItemState.Succeeded => "succeeded",
        ItemState.Failed => "failed",
        ItemState.Cancelled => "cancelled",
        ItemState.Expired => "expired",
        _ => "pending",
    };
}
