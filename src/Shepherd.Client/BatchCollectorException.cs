namespace Shepherd.Client;

/// <summary>
/// A request of a <see cref="BatchCollector"/> got no result: its batch could not be created,
/// failed, did not end in time, or had no result for it. <see cref="Exception.InnerException"/>
/// holds the cause when there was one, such as the server's refusal (<see cref="ShepherdApiException"/>).
/// </summary>
public sealed class BatchCollectorException : ShepherdException
{
    /// <summary>Creates an exception with no message.</summary>
    public BatchCollectorException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public BatchCollectorException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public BatchCollectorException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal BatchCollectorException(string message, string? batchId, Exception? innerException)
        : base(message, innerException) => BatchId = batchId;

    /// <summary>The batch the request was in; null when the batch was never created.</summary>
    public string? BatchId { get; }
}
