using Microsoft.AspNetCore.Http;

namespace Shepherd.Server.Http;

/// <summary>The API a call came in by; it decides the error envelope and the request id header.</summary>
internal enum Door
{
    /// <summary>The OpenAI files and batches API, and Shepherd's inline batches.</summary>
    OpenAI,

    /// <summary>The Anthropic Message Batches API.</summary>
    Anthropic,
}

internal static class Doors
{
    public static Door Of(HttpContext context) =>
        context.Request.Path.StartsWithSegments("/v1/messages", StringComparison.Ordinal) ? Door.Anthropic : Door.OpenAI;
}
