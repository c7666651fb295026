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
