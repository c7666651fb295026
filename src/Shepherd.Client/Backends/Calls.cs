namespace Shepherd.Client.Backends;

/// <summary>What the backends share about calls that can wait, which only a Shepherd server takes.</summary>
internal static class Calls
{
    /// <summary>The refusal of an API without calls that wait, named by <paramref name="api"/> (such as "The OpenAI API").</summary>
    public static NotSupportedException Unsupported(string api) => new(
        $"{api} has no calls that wait for a deadline: they are a Shepherd server's (x-shepherd-deadline, /v1/calls). "
        + "Point the client at a Shepherd server (ShepherdClientOptions.Api = BatchApi.Shepherd), or send the requests in a batch.");
}
