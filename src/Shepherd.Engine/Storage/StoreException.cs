namespace Shepherd.Engine.Storage;

/// <summary>The store could not be opened, read or written; the message names the file and the reason.</summary>
public sealed class StoreException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public StoreException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public StoreException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public StoreException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
