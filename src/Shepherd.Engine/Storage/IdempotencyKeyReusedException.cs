namespace Shepherd.Engine.Storage;

/// <summary>
/// A create named an idempotency key its owner already used for a create of another body: the
/// key would otherwise hand back a batch of other requests than the ones sent.
/// </summary>
public sealed class IdempotencyKeyReusedException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public IdempotencyKeyReusedException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public IdempotencyKeyReusedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public IdempotencyKeyReusedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal IdempotencyKeyReusedException(string key, string batchId)
        : base($"The Idempotency-Key \"{key}\" was already used for batch {batchId}, created from a different body. Send the same body to get that batch again, or use a new key for a new batch.")
    {
        BatchId = batchId;
    }

    /// <summary>The batch the key was first used for.</summary>
    public string? BatchId { get; }
}
