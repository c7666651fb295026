namespace Shepherd.Client;

/// <summary>The API a <see cref="ShepherdClient"/> talks to.</summary>
public enum BatchApi
{
    /// <summary>A Shepherd server: inline batches, paged results, retries of failed requests on the server.</summary>
    Shepherd,

    /// <summary>The OpenAI Batch API (files and batches), at OpenAI or any server that speaks it.</summary>
    OpenAI,

    /// <summary>The Anthropic Message Batches API.</summary>
    Anthropic,
}

/// <summary>Where a <see cref="ShepherdClient"/> sends its calls, and how hard it tries.</summary>
public sealed class ShepherdClientOptions
{
    /// <summary>
    /// The server's root, such as <c>http://127.0.0.1:8080</c> (a Shepherd server),
    /// <c>https://api.openai.com</c> or <c>https://api.anthropic.com</c>; calls go to <c>/v1/…</c> under it.
    /// A url ending in <c>/v1</c> (as the OpenAI SDK and <c>shepherd serve --base-url</c> take it)
    /// is the same root: the <c>/v1</c> is not added twice.
    /// </summary>
    public required Uri BaseUrl { get; set; }

    /// <summary>The key presented as <c>Authorization: Bearer</c> (and <c>x-api-key</c> for Anthropic).</summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// The API spoken.
    /// <value>The default is <see cref="BatchApi.Shepherd"/>.</value>
    /// </summary>
    public BatchApi Api { get; set; } = BatchApi.Shepherd;

    /// <summary>
    /// Retries of one call that failed for a transient reason (a dropped connection, a timeout, 408, 429, 5xx).
    /// <value>The default is 4.</value>
    /// </summary>
    public int MaxRetries { get; set; } = 4;

    /// <summary>
    /// The first retry's delay; each next one doubles, with full jitter, up to <see cref="RetryMaxDelay"/>.
    /// A <c>retry-after</c> from the server wins when it is longer.
    /// <value>The default is 500 ms.</value>
    /// </summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// The longest delay between two tries.
    /// <value>The default is 30 s.</value>
    /// </summary>
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Consecutive failed calls that open the circuit breaker: further calls fail at once, without
    /// reaching the server, until <see cref="BreakerDuration"/> has passed and one trial call succeeds.
    /// <value>The default is 5.</value>
    /// </summary>
    public int BreakerFailures { get; set; } = 5;

    /// <summary>
    /// How long an open breaker refuses calls before letting one through.
    /// <value>The default is 30 s.</value>
    /// </summary>
    public TimeSpan BreakerDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long one try of a call may take (uploads and result pages included).
    /// <value>The default is 5 minutes.</value>
    /// </summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The first wait between two looks at a batch while waiting for it.
    /// <value>The default is 2 s.</value>
    /// </summary>
    public TimeSpan PollInitialDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The factor each next wait grows by.
    /// <value>The default is 1.5.</value>
    /// </summary>
    public double PollGrowth { get; set; } = 1.5;

    /// <summary>
    /// The longest wait between two looks.
    /// <value>The default is 30 s.</value>
    /// </summary>
    public TimeSpan PollMaxDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a wait rides out a server it cannot reach (a restart, a network loss, answers of
    /// 5xx): it keeps trying, reporting <see cref="BatchProgress.Reconnecting"/>, and fails only
    /// once the looks have failed for this long in a row.
    /// <value>The default is 15 minutes.</value>
    /// </summary>
    public TimeSpan WaitOutageTolerance { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Results fetched per call while streaming them.
    /// <value>The default is 1,000.</value>
    /// </summary>
    public int ResultsPageSize { get; set; } = 1000;

    /// <summary>
    /// The clock of retries, the breaker and waiting; tests pass a fake one.
    /// <value>The default is <see cref="TimeProvider.System"/>.</value>
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>
    /// Where the client logs its retries and an open circuit breaker (category <c>Shepherd.Client</c>);
    /// <c>AddShepherdClient</c> sets the application's. None when null.
    /// </summary>
    public Microsoft.Extensions.Logging.ILoggerFactory? LoggerFactory { get; set; }

    internal ShepherdClientOptions Validated()
    {
        ArgumentNullException.ThrowIfNull(BaseUrl);
        if (!BaseUrl.IsAbsoluteUri || BaseUrl.Scheme is not ("http" or "https"))
        {
            throw new ArgumentException($"BaseUrl '{BaseUrl}' is not an absolute http or https url; give the server's root, such as http://127.0.0.1:8080 or https://api.openai.com.", nameof(BaseUrl));
        }

        if (BaseUrl.Query.Length > 0 || BaseUrl.Fragment.Length > 0)
        {
            throw new ArgumentException(
                $"BaseUrl '{BaseUrl}' has a query or fragment, which the calls (/v1/… under it) cannot keep; give the server's root alone, such as {BaseUrl.GetLeftPart(UriPartial.Path).TrimEnd('/')}.", nameof(BaseUrl));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(MaxRetries);
        ArgumentOutOfRangeException.ThrowIfLessThan(BreakerFailures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RetryBaseDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryMaxDelay, RetryBaseDelay);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(BreakerDuration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(PollInitialDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(PollGrowth, 1.0);
        ArgumentOutOfRangeException.ThrowIfLessThan(PollMaxDelay, PollInitialDelay);
        ArgumentOutOfRangeException.ThrowIfLessThan(WaitOutageTolerance, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(ResultsPageSize, 1);
        ArgumentNullException.ThrowIfNull(TimeProvider);
        var copy = (ShepherdClientOptions)MemberwiseClone();
        var root = BaseUrl.ToString().TrimEnd('/');
        // Calls add /v1/ themselves: a root given the way OpenAI SDKs take it would get a second one.
        copy.BaseUrl = new Uri((root.EndsWith("/v1", StringComparison.OrdinalIgnoreCase) ? root[..^3] : root) + "/");
        return copy;
    }
}
