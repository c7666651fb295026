using System.Text.Json;

namespace Shepherd.Client;

/// <summary>
/// The answer to a call that could wait (<see cref="ShepherdClient.CallAsync(string, System.Text.Json.Nodes.JsonObject, TimeSpan, CancellationToken)"/>):
/// the provider's successful answer as it gave it, kept by the server under the call's id. A
/// refusal or failure is not an answer: it is thrown as a <see cref="ShepherdApiException"/>
/// carrying the <see cref="ShepherdApiException.CallId"/>.
/// </summary>
public sealed record CallAnswer
{
    /// <summary>The call's id (<c>call_…</c>): <see cref="ShepherdClient.GetCallAsync"/> fetches the answer again by it.</summary>
    public required string CallId { get; init; }

    /// <summary>The provider's HTTP status, such as 200.</summary>
    public int StatusCode => Response.Status;

    /// <summary>The provider's response body, as it gave it.</summary>
    public required JsonElement Body { get; init; }

    /// <summary>The answer's text, for chat, completions, responses and messages answers; null for others (embeddings).</summary>
    public string? Text { get; init; }

    /// <summary>Tokens the answer used, when the body says.</summary>
    public ResultUsage? Usage { get; init; }

    /// <summary>The HTTP answer the body came in: its status, request id and headers.</summary>
    public required ApiResponse Response { get; init; }
}
