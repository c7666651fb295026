namespace Shepherd.Client;

/// <summary>
/// A call that needs an ended batch (its results, one result, a retry of what failed) was made
/// while the batch still runs: wait for it first (<see cref="ShepherdClient.WaitForCompletionAsync(string, CancellationToken)"/>).
/// Every backend says so the same way.
/// </summary>
public sealed class BatchNotEndedException : ShepherdException
{
    /// <summary>Creates an exception with no message.</summary>
    public BatchNotEndedException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public BatchNotEndedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public BatchNotEndedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal BatchNotEndedException(Batch batch)
        : base($"Batch {batch.Id} is still {BatchStatusNames.ToApiName(batch.Status)} ({batch.Finished} of {batch.Total} requests ended): its results come once it has ended. Wait for it first (WaitForCompletionAsync).")
    {
        Batch = batch;
    }

    /// <summary>The batch as it was when the call was made.</summary>
    public Batch? Batch { get; }
}
