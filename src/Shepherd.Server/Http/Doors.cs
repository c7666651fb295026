using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Model;

namespace Shepherd.Server.Http;

/// <summary>
/// The door a call comes in by, named as the door its batches come in by: the Anthropic
/// Message Batches API under <c>/v1/messages</c>, and the OpenAI API (files, batches of both
/// shapes, the dashboard's JSON) everywhere else. It decides the error envelope and the request
/// id header, and which batches the call sees.
/// </summary>
internal static class Doors
{
    public static BatchDoor Of(HttpContext context) =>
        context.Request.Path.StartsWithSegments("/v1/messages", StringComparison.Ordinal) ? BatchDoor.Anthropic : BatchDoor.OpenAI;
}
