using System.Net;
using System.Net.Http.Headers;

namespace Shepherd.Simulator;

/// <summary>
/// Serves a <see cref="SimulatedProvider"/> to an <see cref="HttpClient"/> in-process: the full
/// client pipeline runs (headers, status codes, timeouts, a reset as a connection error), only
/// the socket is skipped.
/// </summary>
public sealed class SimulatorHandler(SimulatedProvider provider) : HttpMessageHandler
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var body = request.Content is null ? [] : await request.Content.ReadAsByteArrayAsync(cancellationToken);
        var simulated = new SimulatedRequest(
            request.Method.Method,
            request.RequestUri?.AbsolutePath ?? "/",
            body,
            request.Headers.TryGetValues("Authorization", out var auth) ? auth.FirstOrDefault() : null,
            request.Headers.TryGetValues("x-api-key", out var key) ? key.FirstOrDefault() : null,
            request.Content?.Headers.ContentType?.ToString(),
            request.RequestUri?.Query,
            request.RequestUri is { IsAbsoluteUri: true } uri ? new Uri(uri.GetLeftPart(UriPartial.Authority) + "/") : null);
        var answer = await provider.HandleAsync(simulated, cancellationToken);
        if (answer.Fault == SimulatedFault.Reset)
        {
            throw new HttpRequestException(HttpRequestError.ConnectionError, "The simulated provider reset the connection.", new IOException("Connection reset by peer"));
        }

        var response = new HttpResponseMessage((HttpStatusCode)answer.StatusCode)
        {
            RequestMessage = request,
            Content = new ByteArrayContent(answer.Body),
        };
        response.Content.Headers.ContentType = answer.ContentType == Json.MediaType ? Json : new MediaTypeHeaderValue(answer.ContentType);
        foreach (var (name, value) in answer.Headers)
        {
            response.Headers.TryAddWithoutValidation(name, value);
        }

        return response;
    }
}
