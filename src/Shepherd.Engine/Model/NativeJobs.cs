namespace Shepherd.Engine.Model;

/// <summary>Where a job handed to a provider's batch API is.</summary>
public enum NativeJobStatus
{
    /// <summary>Created at the provider; its results are still to be read.</summary>
    Submitted = 0,

    /// <summary>Its results were read and recorded.</summary>
    Ended = 1,
}

/// <summary>A job handed to a provider's own batch API for some of a native batch's items.</summary>
public sealed record NativeJob
{
    /// <summary>The store's id of the job.</summary>
    public required long Id { get; init; }

    /// <summary>The Shepherd batch the job's items belong to.</summary>
    public required string BatchId { get; init; }

    /// <summary>The name of the upstream the job was handed to.</summary>
    public required string Upstream { get; init; }

    /// <summary>The provider's id of its batch.</summary>
    public required string ProviderBatchId { get; init; }

    /// <summary>Where the job is.</summary>
    public NativeJobStatus Status { get; init; }

    /// <summary>True once a cancel was sent to the provider.</summary>
    public bool CancelRequested { get; init; }

    /// <summary>When the job was created at the provider.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
}
