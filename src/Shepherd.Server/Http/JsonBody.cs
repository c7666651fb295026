using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Formats;

namespace Shepherd.Server.Http;

/// <summary>
/// An answer written straight to the response with a <see cref="Utf8JsonWriter"/>: the wire
/// shapes are written field by field, exactly as the official SDKs expect them.
/// </summary>
internal sealed class JsonBody(Action<Utf8JsonWriter> write, int status = StatusCodes.Status200OK) : IResult
{
    public async Task ExecuteAsync(HttpContext httpContext)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        httpContext.Response.StatusCode = status;
        httpContext.Response.ContentType = "application/json";
        await using (var writer = new Utf8JsonWriter(httpContext.Response.BodyWriter, JsonWriterExtensions.Options))
        {
            write(writer);
            await writer.FlushAsync(httpContext.RequestAborted);
        }

        await httpContext.Response.BodyWriter.FlushAsync(httpContext.RequestAborted);
    }
}
