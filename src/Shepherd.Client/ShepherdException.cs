namespace Shepherd.Client;

/// <summary>
/// What the client throws when a batch call cannot be done, as opposed to a wrong argument:
/// the server's refusal or silence (<see cref="ShepherdApiException"/>), a batch not ended yet
/// (<see cref="BatchNotEndedException"/>), a collected request without a result
/// (<see cref="BatchCollectorException"/>). One <c>catch (ShepherdException)</c> takes them all.
/// </summary>
public abstract class ShepherdException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    protected ShepherdException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    protected ShepherdException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    protected ShepherdException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
