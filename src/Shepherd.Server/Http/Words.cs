using Shepherd.Engine.Model;

namespace Shepherd.Server.Http;

/// <summary>The words the APIs use for the engine's priorities and request states; a batch's status is <see cref="BatchStatusWords"/>.</summary>
internal static class Words
{
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
