using System.Net;
using System.Text;

namespace Shepherd.Testing;

/// <summary>An HTTP handler that answers from a script, one entry per call, and records what it was sent.</summary>
public sealed class ScriptedHandler(params Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>>[] script) : HttpMessageHandler
{
    private readonly List<(HttpRequestMessage Request, string Body)> _received = [];
    private int _calls;

    public IReadOnlyList<(HttpRequestMessage Request, string Body)> Received
    {
        get
        {
            lock (_received)
            {
                return [.. _received];
            }
        }
    }

    public static Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>> Json(HttpStatusCode status, string body, params (string Name, string Value)[] headers) => (_, _) =>
    {
        var response = new HttpResponseMessage(status) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            response.Headers.TryAddWithoutValidation(name, value);
        }

        return Task.FromResult(response);
    };

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var body = request.Content is null ? "" : await request.Content.ReadAsStringAsync(cancellationToken);
        int call;
        lock (_received)
        {
            _received.Add((request, body));
            call = _calls++;
        }

        var response = await script[Math.Min(call, script.Length - 1)](request, cancellationToken);
        response.RequestMessage = request;
        return response;
    }
}
