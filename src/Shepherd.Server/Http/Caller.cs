using Microsoft.AspNetCore.Http;

namespace Shepherd.Server.Http;

/// <summary>Who made a call: the owner of the files and batches it may see (null when the server has no keys).</summary>
internal sealed record Caller(string? Owner)
{
    public static Caller Of(HttpContext context) =>
        context.Features.Get<Caller>() ?? throw new InvalidOperationException("The call was not authenticated.");
}
